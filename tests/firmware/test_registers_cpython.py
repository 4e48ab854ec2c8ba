"""The node's packed write check answers as protocols.regmap does, for every role's table (CPython)."""

from __future__ import annotations

import mp_env  # noqa: F401 - ticks on CPython
import pytest

from firmware.registers import RegisterBank
from protocols.errors import ModbusException
from protocols.regmap import HOLDING
from protocols.roles import load

EDGE = (0, 1, 2, 99, 100, 101, 247, 248, 360, 1439, 1440, 0x7FFF, 0x8000, 0xFE98, 0xFFFF)


def _answer(fn, address: int, values: list[int]) -> int:
    try:
        fn(address, values, len(values))
    except ModbusException as exc:
        return exc.code
    return 0


@pytest.mark.parametrize("role", ["lamp", "meter", "env"])
def test_packed_check_equals_the_register_map(role: str) -> None:
    """Every holding address up to the table's end and past it, one and two words, edge values."""
    regmap = load(role)
    rows = tuple(
        (r.name, r.table, r.address, r.type, r.scale, r.unit, r.access, r.minimum, r.maximum, r.doc)
        for r in regmap.registers
    )
    bank = RegisterBank(rows, role=role, role_id=regmap.role_id)
    compared = 0
    for address in range(regmap.size(HOLDING) + 2):
        for a in EDGE:
            assert _answer(bank.check_write, address, [a]) == _answer(regmap.check_write, address, [a])
            for b in (0, 1, 0xFFFF):
                words = [a, b]
                assert _answer(bank.check_write, address, words) == _answer(regmap.check_write, address, words)
                compared += 1
    assert compared > 1000


def test_the_lamp_bank_answers_its_mirrors_with_the_holding_words_as_they_are_now() -> None:
    """Input 27 and 28 read dim_level and relay, whoever moved them (a master's write, the firmware's own set)."""
    from protocols.roles import lamp as spec

    regmap = load("lamp")
    bank = RegisterBank(spec.REGISTERS, role="lamp", role_id=spec.ROLE_ID, mirrors=spec.MIRRORS)
    bank.set("power", 415)
    bank.set("lux", 12)
    bank.write(regmap["dim_level"].address, [35, 1], 2)  # a master's write of dim_level and relay
    words = [0] * 29
    bank.read(4, 0, 29, words)
    assert words[27:29] == [35, 1]
    assert words[regmap["power"].address] == 415 and words[regmap["lux"].address] == 12
    bank.set("dim_level", 80)  # the program moves the lamp
    bank.set("relay", 0)
    part = [0] * 2
    bank.read(4, 28, 1, part)  # a read that starts at a mirror
    assert part[0] == 0
    bank.read(4, 26, 2, part)
    assert part[1] == 80
    without = RegisterBank(spec.REGISTERS, role="lamp", role_id=spec.ROLE_ID)  # firmware 1.0 read 0 there
    without.set("dim_level", 80)
    without.read(4, 27, 1, part)
    assert part[0] == 0
