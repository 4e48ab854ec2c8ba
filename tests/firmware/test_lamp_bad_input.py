"""Bad input to a real lamp node: every writable register and block word refuses what is out of range."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lamp_kit import HEAPSIZE, MAP, Lamp
from street_kit import Master

from protocols.regmap import BOOL, HOLDING, RW, S16, S32, U16, U32
from protocols.roles import lamp as spec
from tools.sim.street import VirtualStreet

LIMITS = {U16: (0, 0xFFFF), S16: (-0x8000, 0x7FFF), U32: (0, 0xFFFFFFFF), S32: (-0x80000000, 0x7FFFFFFF),
          BOOL: (0, 0xFFFF)}


@pytest.fixture(scope="module")
def lamp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamp]:
    s = VirtualStreet(tmp_path_factory.mktemp("bad"), nodes=1, heapsize=HEAPSIZE)
    with s:
        s.start()
        m = Master(s, spec.MAP)
        yield Lamp(m, 1)
        m.close()


def _holding(lamp: Lamp) -> list[int]:
    words: list[int] = []
    for start, count in ((0, 108), (spec.PROGRAM_START, spec.PROGRAM_WORDS + spec.CALENDAR_WORDS)):
        words += lamp.read(HOLDING, start, count)
    return words


def _outside(lo: int, hi: int, limits: tuple[int, int]) -> list[int]:
    return [v for v in (lo - 1, hi + 1, limits[0], limits[1]) if limits[0] <= v <= limits[1] and not lo <= v <= hi]


def test_every_writable_register_refuses_values_out_of_its_range(lamp: Lamp) -> None:
    """Below the minimum, above the maximum, the type's extremes: exception 3, nothing changes."""
    tried = 0
    before = _holding(lamp)
    for reg in MAP.registers:
        if reg.table != HOLDING or reg.access != RW:
            continue
        for raw in _outside(int(reg.minimum), int(reg.maximum), LIMITS[reg.type]):
            bits = raw & ((1 << (16 * reg.width)) - 1)
            words = [(bits >> 16) & 0xFFFF, bits & 0xFFFF] if reg.width == 2 else [bits]
            rr = lamp.write_words(reg.address, words)
            assert rr.isError() and rr.exception_code == 3, (reg.name, raw, rr)
            tried += 1
        half = lamp.write_words(reg.address + 1, [0]) if reg.width == 2 else None
        if half is not None:
            assert half.isError() and half.exception_code == 2, reg.name  # the low word alone
    assert tried >= 30
    assert _holding(lamp) == before


def test_every_block_word_refuses_values_out_of_its_bounds(lamp: Lamp) -> None:
    """Program window and calendar, word by word: exception 3; across a block's end: 2; nothing changes."""
    before = _holding(lamp)
    tried = 0
    for start, size in ((spec.PROGRAM_START, spec.PROGRAM_WORDS), (spec.CALENDAR_START, spec.CALENDAR_WORDS)):
        for address in range(start, start + size):
            lo, hi = spec.block_bounds(address)
            for raw in _outside(lo, hi, (-0x8000, 0x7FFF) if lo < 0 else (0, 0xFFFF)):
                rr = lamp.write_words(address, [raw])
                assert rr.isError() and rr.exception_code == 3, (address, raw, rr)
                tried += 1
        rr = lamp.write_words(start + size - 1, [0, 0])
        assert rr.isError() and rr.exception_code == 2
    assert tried >= 150
    assert _holding(lamp) == before


def test_semantic_refusals_change_nothing(lamp: Lamp) -> None:
    """An invalid program, a calendar naming a missing program, photo_on above photo_off: refused whole."""
    before = _holding(lamp)
    dup = lamp.program(0, [(0, 60, 100), (0, 60, 0)])  # two points at 01:00
    assert dup.isError() and dup.exception_code == 3
    astro = lamp.program(0, [(1, 400, 100)])  # 400 min after sunrise: beyond -360..360
    assert astro.isError() and astro.exception_code == 3
    cal = lamp.calendar(3)
    assert cal.isError() and cal.exception_code == 3
    photo = lamp.c.write_registers(MAP["photo_on"].address, [500, 400], device_id=1)
    assert photo.isError() and photo.exception_code == 3
    assert _holding(lamp) == before
