# common-subset
"""The SDM630 profile: float32 input registers, high word first, read in one request."""

import struct

from protocols.regmap import F32, INPUT
from protocols.roles import ROLES, load


def test_listed_and_loadable():
    assert "sdm630" in ROLES
    rmap = load("sdm630")
    assert rmap.role == "sdm630"
    assert len(rmap.registers) == 34


def test_one_request_of_80_input_registers():
    rmap = load("sdm630")
    assert rmap.blocks(INPUT) == ((0, 80),)
    assert rmap.blocks(3) == ()


def test_every_register_is_f32_input():
    for reg in load("sdm630").registers:
        assert reg.type == F32
        assert reg.table == INPUT
        assert reg.width == 2


def test_manual_addresses():
    rmap = load("sdm630")
    # 30001 voltage L1, 30053 total power, 30071 frequency, 30073 import kWh
    assert rmap["voltage_l1"].address == 0
    assert rmap["power"].address == 52
    assert rmap["frequency"].address == 70
    assert rmap["import_energy"].address == 72
    assert rmap["import_energy"].unit == "kWh"


def test_decode_high_word_first():
    rmap = load("sdm630")
    words = [0] * 80
    hi, lo = struct.unpack(">HH", struct.pack(">f", 230.5))
    words[0] = hi
    words[1] = lo
    hi, lo = struct.unpack(">HH", struct.pack(">f", 49.75))
    words[70] = hi
    words[71] = lo
    got = {}
    for reg, raw in rmap.decode(INPUT, 0, words):
        got[reg.name] = reg.value(raw)
    assert got["voltage_l1"] == 230.5
    assert got["frequency"] == 49.75
    assert got["power"] == 0.0
    assert len(got) == 34
