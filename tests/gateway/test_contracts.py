"""gateway.contracts states the face of each protocols module the gateway uses: check it against the module."""

from __future__ import annotations

import importlib
import inspect
from typing import get_origin, get_type_hints

import pytest

from gateway import contracts

FACES = [
    (contracts.CommonContract, "protocols.roles.common", contracts.common),
    (contracts.LampContract, "protocols.roles.lamp", contracts.lamp),
    (contracts.ProgramRules, "protocols.programs", contracts.programs),
    (contracts.SenmlLabels, "protocols.senml", contracts.senml),
    (contracts.ModbusRequests, "protocols.modbus.master", contracts.modbus),
    (contracts.ModbusBits, "protocols.modbus.bits", contracts.bits),
    (contracts.BthomeCodec, "protocols.bthome_read", contracts.bthome),
    (contracts.BleAdvertTables, "protocols.ble_adverts", contracts.ble_adverts),
]


def _members(face: type) -> tuple[dict[str, object], list[str]]:
    hints = get_type_hints(face, vars(contracts))
    methods = [name for name, value in vars(face).items() if inspect.isfunction(value) and not name.startswith("_")]
    return hints, methods


@pytest.mark.parametrize(("face", "module_name", "bound"), FACES, ids=[f[1] for f in FACES])
def test_each_face_matches_its_module(face, module_name, bound):
    module = importlib.import_module(module_name)
    # the same source; not always the same object: firmware tests in this process may have released
    # (removed from sys.modules) a module the gateway bound at import, as a node frees its heap
    assert bound.__name__ == module_name and bound.__file__ == module.__file__
    module = bound
    hints, methods = _members(face)
    assert hints or methods
    for name, hint in hints.items():
        value = getattr(module, name)
        if hint is int:
            assert type(value) is int, name  # not a bool, not a float
        else:
            assert isinstance(value, get_origin(hint) or hint) and value, name
    for name in methods:
        theirs = inspect.signature(getattr(module, name))
        ours = inspect.signature(getattr(face, name))
        assert list(theirs.parameters) == list(ours.parameters)[1:], name  # the face's first is self


def test_the_gateway_builds_register_maps_through_the_boundary():
    rows = [("w5", contracts.HOLDING, 5, contracts.U16, 0, None, contracts.RW, 0, 0xFFFF, "")]
    regmap = contracts.register_map("words", rows)
    assert regmap.blocks(contracts.HOLDING) == ((5, 1),)
    assert regmap["w5"].value(7) == 7


def test_role_constants_are_the_modules_integers():
    lamp = contracts.role_constants("lamp")
    assert lamp["PROGRAM_START"] == contracts.lamp.PROGRAM_START
    assert all(type(v) is int for v in lamp.values())
    assert any(name.startswith("EV_") for name in contracts.role_constants("common"))


def test_modbus_pdus_are_the_rtu_frames_without_unit_and_crc():
    from protocols.modbus.master import build_read, build_write_multiple

    assert contracts.modbus.read_pdu(4, 0x10, 2) == build_read(9, 4, 0x10, 2)[1:-2]
    assert contracts.modbus.write_multiple_pdu(1, [0x000A, 0x0102]) == build_write_multiple(0x11, 1, [10, 258])[1:-2]
    with pytest.raises(ValueError, match="count"):
        contracts.modbus.read_pdu(3, 0, 126)
