# common-subset
from expect import raises

from protocols.errors import ModbusException
from protocols.regmap import (
    BOOL,
    F32,
    HOLDING,
    INPUT,
    RO,
    RW,
    S16,
    S32,
    U16,
    U32,
    RegisterMap,
    RegisterMapError,
)
from protocols.roles import ROLES, load


def _map(rows):
    return RegisterMap("test", rows)


def test_every_role_loads_and_is_dense():
    for role in ROLES:
        m = load(role)
        for table in (HOLDING, INPUT):
            covered = 0
            for _start, count in m.blocks(table):
                assert 1 <= count <= 125
                covered += count
            assert covered == m.size(table)


def test_unknown_role_names_known_ones():
    exc = raises(ValueError, load, "lamps")
    assert "lamp" in str(exc)


def test_lamp_map_decodes_a_read_block():
    m = load("lamp")
    words = [0, 7, 1234, 2301, 512, 1, 2, 0xFFFB, 1, 0, 61, 1, 0x0100]
    values = {}
    for reg, raw in m.decode(INPUT, 0, words):
        values[reg.name] = reg.value(raw)
    assert values["seq"] == 7
    assert abs(values["power"] - 123.4) < 1e-9
    assert abs(values["current"] - 0.512) < 1e-9
    assert values["energy"] == 65538
    assert abs(values["temperature"] + 0.5) < 1e-9
    assert values["uptime"] == 61
    assert values["firmware"] == 0x0100


def test_decode_skips_registers_cut_by_the_block():
    m = load("lamp")
    names = [reg.name for reg, raw in m.decode(INPUT, 1, [0, 0, 0])]
    # seq starts at 0 (outside) and energy at 5 (outside): only power and voltage fit at 2..3
    assert names == ["power", "voltage"]


def test_types_round_trip_through_words():
    m = _map((
        ("a", INPUT, 0, U16, 0, None, RO, 0, 0xFFFF, ""),
        ("b", INPUT, 1, S16, 0, None, RO, -0x8000, 0x7FFF, ""),
        ("c", INPUT, 2, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
        ("d", INPUT, 4, S32, 0, None, RO, -0x80000000, 0x7FFFFFFF, ""),
        ("e", HOLDING, 0, BOOL, 0, None, RW, 0, 1, ""),
        ("f", INPUT, 6, F32, 0, "W", RO, -1e6, 1e6, ""),
    ))
    for name, raw in (("a", 65535), ("b", -32768), ("b", 5), ("c", 0xDEADBEEF), ("d", -2), ("e", 1)):
        reg = m[name]
        assert reg.from_words(list(reg.words(raw))) == raw
    f = m["f"]
    assert f.words(1.5) == (0x3FC0, 0)
    assert f.from_words([0x3FC0, 0]) == 1.5


def test_scaled_values_convert_exactly():
    m = load("lamp")
    assert m["current"].to_raw(0.5) == 500
    assert m["power"].to_raw(60) == 600
    assert m["dim_level"].to_raw(42) == 42
    assert m["relay"].to_raw(True) == 1
    assert m["relay"].value(1) is True


def test_to_raw_rejects_out_of_range_and_excess_precision():
    m = load("lamp")
    assert "0..100" in str(raises(ValueError, m["dim_level"].to_raw, 101))
    raises(ValueError, m["dim_level"].to_raw, -1)
    raises(ValueError, m["power"].to_raw, 1.25)


def test_check_write_allows_only_whole_writable_registers_in_range():
    m = load("lamp")
    m.check_write(0, [50, 1], 2)
    assert raises(ModbusException, m.check_write, 0, [101], 1).code == 3
    assert raises(ModbusException, m.check_write, 1, [2], 1).code == 3
    assert raises(ModbusException, m.check_write, 50, [0], 1).code == 2  # a gap in the lamp's map
    assert raises(ModbusException, m.check_write, 14, [60, 0], 2).code == 2  # rated_power, then the gap


def test_check_write_refuses_half_of_a_32_bit_register():
    m = _map((("x", HOLDING, 0, U32, 0, None, RW, 0, 1000, ""),))
    m.check_write(0, [0, 1000], 2)
    assert raises(ModbusException, m.check_write, 0, [0], 1).code == 2
    assert raises(ModbusException, m.check_write, 1, [5], 1).code == 2


def test_table_errors_name_role_register_and_field():
    cases = (
        ((("a", INPUT, 0, U16, 0, None, RO, 0, 1, ""), ("a", INPUT, 1, U16, 0, None, RO, 0, 1, "")), "field name"),
        ((("a", INPUT, 0, U32, 0, None, RO, 0, 1, ""), ("b", INPUT, 1, U16, 0, None, RO, 0, 1, "")), "overlaps a"),
        ((("a", INPUT, 0, 9, 0, None, RO, 0, 1, ""),), "field type"),
        ((("a", INPUT, 0, U16, 0, None, RW, 0, 1, ""),), "field access"),
        ((("a", 7, 0, U16, 0, None, RO, 0, 1, ""),), "field table"),
        ((("a", INPUT, 0, U16, 0, None, RO, 0, 70000, ""),), "field maximum"),
        ((("Bad", INPUT, 0, U16, 0, None, RO, 0, 1, ""),), "field name"),
        ((("a", INPUT, 0, U16, 12, None, RO, 0, 1, ""),), "field scale"),
        ((("a", INPUT, 0),), "needs 10 fields"),
    )
    for rows, expected in cases:
        exc = raises(RegisterMapError, _map, rows)
        assert "role test" in str(exc), str(exc)
        assert expected in str(exc), str(exc)


def test_unknown_register_suggests_a_close_name():
    exc = raises(KeyError, load("lamp").__getitem__, "powr")
    assert "power" in str(exc)


def test_role_table_codes_are_the_register_map_codes():
    from protocols import regmap
    from protocols.roles import kinds

    for name in ("HOLDING", "INPUT", "U16", "S16", "U32", "S32", "BOOL", "F32", "RO", "RW"):
        assert getattr(kinds, name) == getattr(regmap, name), name


def test_mirrors_name_a_one_word_holding_register_and_a_free_input_word():
    rows = (
        ("level", HOLDING, 0, U16, 0, None, RW, 0, 100, ""),
        ("where", HOLDING, 1, S32, 0, None, RW, -5, 5, ""),
        ("power", INPUT, 0, U16, 0, None, RO, 0, 1, ""),
        ("seq", INPUT, 1, U32, 0, None, RO, 0, 1, ""),
    )
    m = RegisterMap("test", rows, mirrors=(("level", 3),), mirrors_since=0x0101)
    assert m.mirrors == {"level": 3} and m.mirrors_since == 0x0101
    assert m.size(INPUT) == 3 and m.blocks(INPUT) == ((0, 3),)  # a mirror is not a register of the table
    cases = (
        ((("power", 5),), "only a one-word holding register"),
        ((("where", 5),), "only a one-word holding register"),
        ((("nothing", 5),), "only a one-word holding register"),
        ((("level", 2),), "input 2 is taken"),  # the second word of seq
        ((("level", 5), ("level", 5)), "input 5 is taken"),
        ((("level", 70000),), "must be 0..65535"),
    )
    for mirrors, expected in cases:
        exc = raises(RegisterMapError, RegisterMap, "test", rows, 0, 125, mirrors)
        assert "role test" in str(exc) and "field mirror" in str(exc), str(exc)
        assert expected in str(exc), str(exc)
    lamp = load("lamp")
    assert lamp.mirrors == {"dim_level": 27, "relay": 28}
    for name in lamp.mirrors:
        assert lamp[name].table == HOLDING
