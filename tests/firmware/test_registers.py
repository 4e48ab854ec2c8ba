# common-subset
"""The node's register bank: packed from rows, whole-register writes, blocks, all-or-nothing with hooks."""

from expect import raises

from firmware.registers import RegisterBank
from protocols.errors import ModbusException
from protocols.modbus.pdu import Request
from protocols.modbus.slave import respond
from protocols.roles.kinds import BOOL, HOLDING, INPUT, RO, RW, S16, S32, U16, U32

ROWS = (
    ("level", HOLDING, 0, U16, 0, "%", RW, 0, 100, ""),
    ("on", HOLDING, 1, BOOL, 0, None, RW, 0, 1, ""),
    ("lat", HOLDING, 2, S32, -6, "lat", RW, -90000000, 90000000, ""),
    ("offset", HOLDING, 4, S16, 0, "min", RW, -720, 840, ""),
    ("status", HOLDING, 5, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("seq", INPUT, 0, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("temp", INPUT, 2, S16, -1, "Cel", RO, -400, 1250, ""),
)


def _bounds(address):
    return ((0, 2), (-360, 1439))[(address - 10) % 2]


def _bank(hook=None):
    return RegisterBank(ROWS, hook, blocks=((HOLDING, 10, 4),), role="test", role_id=9)


def test_values_by_name_in_every_type():
    b = _bank()
    b.set("lat", -52370000)
    b.set("offset", -60)
    b.set("seq", 0xFFFFFFFE)
    b.set("temp", -55)
    assert b.get("lat") == -52370000 and b.get("offset") == -60
    assert b.get("seq") == 0xFFFFFFFE and b.get("temp") == -55
    assert list(b.holding[2:5]) == [0xFCE0, 0xE5B0, 0xFFC4]  # high word first, two's complement
    assert b.address("lat") == 2 and b.bounds("lat") == (-90000000, 90000000) and b.bounds("status") is None
    assert b.role_id == 9 and b.has("temp") and not b.has("nope")
    assert "levle" in str(raises(KeyError, b.get, "levle"))


def test_writes_are_whole_writable_registers_within_bounds():
    names = []
    b = _bank(names.append)
    b.write(0, [50, 1], 2)
    assert names == [["level", "on"]] and b.get("level") == 50
    b.write(2, [0xFFFF, 0xFFFF], 2)  # lat -1
    assert b.get("lat") == -1
    for address, values, code in (
        (0, [101], 3),  # out of range
        (1, [2], 3),
        (2, [0x7FFF, 0xFFFF], 3),  # lat above 90 degrees
        (3, [0], 2),  # half of lat
        (2, [0], 2),  # lat cut short
        (4, [0xFC00], 3),  # offset -1024
        (5, [1], 2),  # read-only
        (6, [1], 2),  # nothing there
        (4, [0, 0], 2),  # offset, then the read-only status
    ):
        e = raises(ModbusException, b.write, address, values, len(values))
        assert e.code == code, (address, values, e.code)
    assert b.get("level") == 50 and b.get("lat") == -1 and b.get("offset") == 0
    assert len(names) == 2


def test_blocks_check_each_word_and_refuse_crossing_their_end():
    seen = []
    b = _bank()
    b.add_block(10, 4, _bounds, lambda a, n: seen.append((a, n)))
    b.write(10, [2, 0xFE98, 0, 1439], 4)  # -360 as s16
    assert seen == [(10, 4)] and list(b.holding[10:14]) == [2, 0xFE98, 0, 1439]
    assert raises(ModbusException, b.write, 11, [0xFE97], 1).code == 3  # -361
    assert raises(ModbusException, b.write, 10, [3], 1).code == 3
    assert raises(ModbusException, b.write, 12, [0, 0, 0], 3).code == 2  # past the block
    assert list(b.holding[10:14]) == [2, 0xFE98, 0, 1439]


def test_a_hook_that_refuses_undoes_the_write():
    def refuse(names):
        raise ModbusException(16, 3, "no")

    b = _bank(refuse)
    e = raises(ModbusException, b.write, 0, [70, 0], 2)
    assert e.code == 3 and b.get("level") == 0 and b.get("on") == 0

    def boom(address, count):
        raise MemoryError()

    b.add_block(10, 4, _bounds, boom)
    raises(MemoryError, b.write, 10, [1, 5], 2)
    assert list(b.holding[10:12]) == [0, 0]


def test_the_longest_writes_that_pass_the_checks_are_undone_whole():
    """Every writable word of the table in one write, a whole block in another: refused, all of each goes back."""
    def refuse(names):
        raise ModbusException(16, 3, "no")

    def refuse_block(address, count):
        raise ModbusException(16, 3, "no")

    b = RegisterBank(ROWS, refuse, blocks=((HOLDING, 10, 7),), role="test", role_id=9)
    b.add_block(10, 7, lambda a: (0, 9), refuse_block)
    before = list(b.holding)
    assert raises(ModbusException, b.write, 0, [1, 1, 0, 5, 7], 5).code == 3  # level, on, lat, offset: 5 words
    assert raises(ModbusException, b.write, 10, [1, 2, 3, 4, 5, 6, 7], 7).code == 3
    assert list(b.holding) == before


def test_reads_cover_blocks_and_stop_at_the_end():
    b = _bank()
    out = [0] * 14
    b.read(3, 0, 14, out)
    assert raises(ModbusException, b.read, 3, 1, 14, out).code == 2
    assert raises(ModbusException, b.read, 4, 3, 1, out).code == 2  # input table: 3 words
    assert raises(ModbusException, b.read, 6, 0, 1, out).code == 1


def _request(fc, address, values, read_address=0, read_count=0):
    req = Request(1, fc, address, len(values), values)
    req.byte_count = 2 * len(values)
    if fc == 23:
        req.read_address = read_address
        req.read_count = read_count
    return req


def test_read_write_multiple_goes_through_the_same_checks_and_hook_as_16_and_reads_the_result():
    """Function 23 through respond(): the bank's checks and hook as for 16, and the answer shows what they did."""
    def banks():
        calls = []

        def hook(names):
            calls.append(names)
            if b.get("level") > 90:
                raise ModbusException(16, 3, "too bright")
            b.set("status", 2 * b.get("level"))  # a side effect of the write, in a read-only word

        b = _bank(hook)
        return b, calls

    via_16, calls_16 = banks()
    via_23, calls_23 = banks()
    out = bytearray(256)
    assert respond(_request(16, 0, [40, 1]), via_16, out) == 8
    n = respond(_request(23, 0, [40, 1], 0, 6), via_23, out)
    assert bytes(out[1:n - 2]) == bytes([23, 12, 0, 40, 0, 1, 0, 0, 0, 0, 0, 0, 0, 80])
    assert calls_23 == calls_16 == [["level", "on"]]
    assert list(via_23.holding) == list(via_16.holding)
    # Refused by the hook: undone, nothing read; by the checks (read-only word): the hook never runs.
    for values, address, code in (([95], 0, 3), ([1], 5, 2)):
        before = list(via_23.holding)
        n = respond(_request(23, address, values, 0, 6), via_23, out)
        assert bytes(out[1:3]) == bytes([0x97, code]) and n == 5
        assert list(via_23.holding) == before
    assert calls_23 == [["level", "on"], ["level"]]
