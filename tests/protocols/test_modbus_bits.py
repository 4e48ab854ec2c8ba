# common-subset
"""Coils and discrete inputs: the PDUs of functions 01, 02, 05 and 15, and bit tables in a register map.

Golden vectors are the worked examples of the Modbus Application Protocol
Specification V1.1b3 (sections 6.1, 6.2, 6.5 and 6.11).
"""

import struct

from expect import raises

from protocols.errors import ModbusException
from protocols.modbus.bits import (
    pack_bits,
    read_bits_answer,
    read_bits_pdu,
    unpack_bits,
    write_coil_pdu,
    write_coils_pdu,
)
from protocols.modbus.pdu import COIL_ON, FC_READ_COILS, FC_READ_DISCRETE
from protocols.regmap import (
    BOOL,
    COIL,
    DISCRETE,
    F32,
    HIGH_FIRST,
    HOLDING,
    INPUT,
    LOW_FIRST,
    RO,
    RW,
    U16,
    U32,
    RegisterMap,
    RegisterMapError,
)


def test_read_coils_example_of_the_specification():
    # Read coils 20-38 (address 19, 19 coils): answer CD 6B 05 -> coils 27-20, 35-28, 38-36.
    assert read_bits_pdu(FC_READ_COILS, 19, 19) == bytes.fromhex("0100130013")
    bits = read_bits_answer(bytes.fromhex("0103cd6b05"), FC_READ_COILS, 19)
    assert bits[:8] == [1, 0, 1, 1, 0, 0, 1, 1]  # CD, coil 20 in the lowest bit
    assert bits[8:16] == [1, 1, 0, 1, 0, 1, 1, 0]  # 6B
    assert bits[16:] == [1, 0, 1]  # 05, the five padding bits left out


def test_read_discrete_inputs_example_of_the_specification():
    # Read inputs 197-218 (address 196, 22 inputs): answer AC DB 35.
    assert read_bits_pdu(FC_READ_DISCRETE, 196, 22) == bytes.fromhex("0200c40016")
    bits = read_bits_answer(bytes.fromhex("0203acdb35"), FC_READ_DISCRETE, 22)
    assert pack_bits(bits) == bytes.fromhex("acdb35")
    assert len(bits) == 22


def test_write_single_coil_example_of_the_specification():
    # Coil 173 (address 172) ON: FF 00; OFF: 00 00.
    assert write_coil_pdu(172, True) == bytes.fromhex("0500acff00")
    assert write_coil_pdu(172, 0) == bytes.fromhex("0500ac0000")
    assert COIL_ON == 0xFF00


def test_write_multiple_coils_example_of_the_specification():
    # Ten coils from coil 20 (address 19): CD 01.
    bits = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    assert write_coils_pdu(19, bits) == bytes.fromhex("0f0013000a02cd01")
    assert write_coils_pdu(19, [b == 1 for b in bits]) == bytes.fromhex("0f0013000a02cd01")


def test_bit_requests_refuse_what_the_protocol_forbids():
    raises(ValueError, read_bits_pdu, 3, 0, 1)
    raises(ValueError, read_bits_pdu, FC_READ_COILS, 0, 0)
    raises(ValueError, read_bits_pdu, FC_READ_COILS, 0, 2001)
    raises(ValueError, read_bits_pdu, FC_READ_COILS, 65535, 2)
    raises(ValueError, write_coils_pdu, 0, [])
    raises(ValueError, write_coils_pdu, 0, bytes(1969))  # bytes: a node-sized heap holds them
    raises(ValueError, write_coils_pdu, 0, [0, 2])
    raises(ValueError, write_coil_pdu, -1, True)
    raises(ValueError, unpack_bits, b"\x01", 9)


def test_a_bit_answer_of_the_wrong_shape_is_refused():
    raises(ValueError, read_bits_answer, bytes.fromhex("0102cd6b"), FC_READ_COILS, 19)  # byte count 2 for 19 bits
    raises(ValueError, read_bits_answer, bytes.fromhex("0203cd6b05"), FC_READ_COILS, 19)  # another function
    raises(ValueError, read_bits_answer, bytes.fromhex("0103cd6b"), FC_READ_COILS, 19)  # cut short


def relay_map():
    return RegisterMap("relay", (
        ("relay_1", COIL, 0, BOOL, 0, None, RW, 0, 1, "relay 1"),
        ("relay_2", COIL, 1, BOOL, 0, None, RW, 0, 1, "relay 2"),
        ("input_1", DISCRETE, 0, BOOL, 0, None, RO, 0, 1, "input 1"),
        ("address", HOLDING, 0x4000, U16, 0, None, RO, 0, 0xFFFF, "unit"),
    ))


def test_bit_tables_are_read_as_blocks_of_bits():
    rmap = relay_map()
    assert rmap.blocks(COIL) == ((0, 2),)
    assert rmap.blocks(DISCRETE) == ((0, 1),)
    assert rmap.blocks(HOLDING) == ((0x4000, 1),)
    assert rmap.blocks(INPUT) == ()
    got = {}
    for reg, raw in rmap.decode(COIL, 0, [0, 1]):
        got[reg.name] = reg.value(raw)
    assert got == {"relay_1": False, "relay_2": True}


def test_a_coil_write_is_checked_like_a_register_write():
    rmap = relay_map()
    rmap.check_write(0, [1, 0], 2, COIL)
    err = raises(ModbusException, rmap.check_write, 0, [2], 1, COIL)
    assert err.code == 3
    assert err.function == 15
    err = raises(ModbusException, rmap.check_write, 5, [1], 1, COIL)
    assert err.code == 2
    err = raises(ModbusException, rmap.check_write, 0, [1], 1, DISCRETE)  # inputs are never written
    assert err.code == 2


def test_bit_tables_hold_only_bits_and_inputs_are_read_only():
    bad = ("x", COIL, 0, U16, 0, None, RW, 0, 1, "")
    err = raises(RegisterMapError, RegisterMap, "r", (bad,))
    assert "register x, field type" in str(err)
    bad = ("x", DISCRETE, 0, BOOL, 0, None, RW, 0, 1, "")
    err = raises(RegisterMapError, RegisterMap, "r", (bad,))
    assert "register x, field access" in str(err)


def test_low_word_first_values_round_trip():
    rmap = RegisterMap("swapped", (
        ("energy", INPUT, 0, U32, 0, "Wh", RO, 0, 0xFFFFFFFF, "", LOW_FIRST),
        ("power", INPUT, 2, F32, 0, "W", RO, -3.4e38, 3.4e38, "", LOW_FIRST),
        ("limit", HOLDING, 0, U32, 0, "W", RW, 0, 100000, "", HIGH_FIRST),
    ))
    energy, power, limit = rmap["energy"], rmap["power"], rmap["limit"]
    assert energy.words(0x12345678) == (0x5678, 0x1234)
    assert energy.from_words([0x5678, 0x1234]) == 0x12345678
    hi, lo = struct.unpack(">HH", struct.pack(">f", 230.5))
    assert power.words(230.5) == (lo, hi)
    assert power.from_words([lo, hi]) == 230.5
    assert limit.words(70000) == (1, 4464)
    err = raises(RegisterMapError, RegisterMap, "r", (("x", INPUT, 0, U32, 0, None, RO, 0, 1, "", 7),))
    assert "register x, field order" in str(err)


def test_a_device_limit_splits_the_read():
    rows = [("v%d" % i, INPUT, 2 * i, F32, 0, "V", RO, -3.4e38, 3.4e38, "") for i in range(50)]
    assert RegisterMap("m", rows).blocks(INPUT) == ((0, 100),)
    assert RegisterMap("m", rows, 0, 40).blocks(INPUT) == ((0, 40), (40, 40), (80, 20))
