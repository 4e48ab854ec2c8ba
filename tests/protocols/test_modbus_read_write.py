# common-subset
"""Function 23 (read/write multiple registers) in the slave: framing, the write before the read, every exception."""

from expect import raises

from protocols.errors import ModbusException
from protocols.modbus.crc import crc16
from protocols.modbus.master import build_read_write_multiple, read_write_multiple_pdu
from protocols.modbus.pdu import (
    EX_DEVICE_FAILURE,
    EX_ILLEGAL_ADDRESS,
    EX_ILLEGAL_VALUE,
    FC_READ_HOLDING,
    FC_READ_WRITE_MULTIPLE,
    MAX_RW_WRITE_COUNT,
    Request,
)
from protocols.modbus.rtu import request_length, response_length
from protocols.modbus.slave import SlaveFramer, respond

# Modbus Application Protocol v1.1b3, 6.17: read 6 registers from 3, write 3 (00FF each) at 14; unit 1.
# The CRC is pymodbus's (tests/protocols/test_modbus_cpython.py builds the same frame with it).
SPEC_REQUEST = bytes.fromhex("01 17 0003 0006 000e 0003 06 00ff 00ff 00ff 4691".replace(" ", ""))
# The spec's answer: byte count 12 and registers 3..8 as they are after the write.
SPEC_ANSWER = bytes.fromhex("01 17 0c 00fe 0acd 0001 0003 000d 00ff 1d79".replace(" ", ""))
SPEC_VALUES = [0x00FE, 0x0ACD, 0x0001, 0x0003, 0x000D, 0x00FF]


def _frame(hexbody):
    """A frame from its hex body plus its CRC (the CRC itself is checked in test_modbus_crc)."""
    body = bytes.fromhex(hexbody.replace(" ", ""))
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


READ_1 = _frame("01 03 0000 000a")
READ_5 = _frame("05 03 0000 0002")
RESPONSE_5 = _frame("05 03 04 0001 0002")


class Bank:
    """32 holding registers (values above 1000 refused); ``log`` records every call in order."""

    def __init__(self):
        self.holding = [0] * 32
        self.log = []
        self.read_fails = None

    def read(self, function, address, count, values_out):
        self.log.append(("read", function, address, count))
        if self.read_fails is not None:
            raise self.read_fails
        if function != FC_READ_HOLDING:
            raise AssertionError("23 reads holding registers, got function %d" % function)
        if address + count > len(self.holding):
            raise ModbusException(function, EX_ILLEGAL_ADDRESS)
        for i in range(count):
            values_out[i] = self.holding[address + i]

    def write(self, address, values, count):
        self.log.append(("write", address, count))
        if address + count > len(self.holding):
            raise ModbusException(16, EX_ILLEGAL_ADDRESS)
        for i in range(count):
            if values[i] > 1000:
                raise ModbusException(16, EX_ILLEGAL_VALUE)
        for i in range(count):
            self.holding[address + i] = values[i]


def _spec_bank():
    bank = Bank()
    bank.holding[3:9] = SPEC_VALUES
    return bank


def _rw(read_address, read_count, address, values, unit=1, count=None, byte_count=None):
    req = Request(unit, FC_READ_WRITE_MULTIPLE, address, len(values) if count is None else count, values)
    req.byte_count = 2 * len(values) if byte_count is None else byte_count
    req.read_address = read_address
    req.read_count = read_count
    return req


def _answer(req, bank):
    out = bytearray(256)
    n = respond(req, bank, out)
    return bytes(out[:n])


def _exception_code(req, bank):
    resp = _answer(req, bank)
    assert len(resp) == 5, resp
    assert resp[1] == 0x97
    assert crc16(resp, 0, 3) == resp[3] | resp[4] << 8
    return resp[2]


def _all(framer):
    out = []
    while True:
        req = framer.next_request()
        if req is None:
            return out
        out.append(req)


SPEC_REQ = _rw(3, 6, 14, [0xFF, 0xFF, 0xFF])


# --- the spec's example --------------------------------------------------------


def test_spec_example_is_parsed():
    f = SlaveFramer(1)
    f.feed(SPEC_REQUEST)
    req = f.next_request()
    assert req == SPEC_REQ
    assert (req.function, req.read_address, req.read_count) == (23, 3, 6)
    assert (req.address, req.count, req.byte_count, req.values) == (14, 3, 6, [0xFF, 0xFF, 0xFF])
    assert f.next_request() is None
    assert f.frames_ok == 1 and f.bytes_dropped == 0 and f.crc_errors == 0
    assert "read_address=3, read_count=6" in repr(req)


def test_spec_example_is_answered_with_the_words_read():
    bank = _spec_bank()
    assert _answer(SPEC_REQ, bank) == SPEC_ANSWER
    assert bank.holding[14:17] == [0xFF, 0xFF, 0xFF]
    assert bank.log == [("write", 14, 3), ("read", FC_READ_HOLDING, 3, 6)]


def test_the_write_comes_before_the_read():
    # Read 12..17 across the write at 14..16: the answer holds the new words.
    bank = _spec_bank()
    bank.holding[12:18] = [1, 2, 3, 4, 5, 6]
    assert _answer(_rw(12, 6, 14, [7, 8, 9]), bank) == _frame("01 17 0c 0001 0002 0007 0008 0009 0006")
    assert bank.log == [("write", 14, 3), ("read", FC_READ_HOLDING, 12, 6)]


def test_the_largest_read_and_write():
    bank = Bank()
    bank.holding = list(range(200))
    req = _rw(0, 125, 0, [5] * MAX_RW_WRITE_COUNT)
    resp = _answer(req, bank)
    assert len(resp) == 255 and resp[1] == 0x17 and resp[2] == 250
    assert resp[3:5] == b"\x00\x05" and resp[3 + 2 * 121 : 5 + 2 * 121] == b"\x00\x79"  # register 121 unwritten


def test_requests_are_equal_only_with_the_same_read_range():
    assert _rw(3, 6, 14, [0xFF, 0xFF, 0xFF]) == SPEC_REQ
    assert _rw(4, 6, 14, [0xFF, 0xFF, 0xFF]) != SPEC_REQ
    assert _rw(3, 5, 14, [0xFF, 0xFF, 0xFF]) != SPEC_REQ
    assert Request(1, 16, 14, 3, [0xFF, 0xFF, 0xFF]) != SPEC_REQ


# --- exceptions ----------------------------------------------------------------


def test_read_count_out_of_range_writes_nothing():
    for read_count in (0, 126, 0xFFFF):
        bank = Bank()
        assert _exception_code(_rw(0, read_count, 0, [1]), bank) == EX_ILLEGAL_VALUE
        assert bank.log == [] and bank.holding[0] == 0


def test_write_count_out_of_range():
    bank = Bank()
    assert _exception_code(_rw(0, 1, 0, []), bank) == EX_ILLEGAL_VALUE
    assert _exception_code(_rw(0, 1, 0, [1] * 122), bank) == EX_ILLEGAL_VALUE
    assert bank.log == []


def test_byte_count_mismatch_from_the_wire():
    f = SlaveFramer(1)
    f.feed(_frame("01 17 0000 0001 0000 0002 06 0001 0002 0003"))
    req = f.next_request()
    assert req.count == 2 and req.byte_count == 6 and req.values == [1, 2, 3]
    bank = Bank()
    assert _exception_code(req, bank) == EX_ILLEGAL_VALUE
    assert bank.log == []


def test_ranges_past_register_65535():
    bank = Bank()
    assert _exception_code(_rw(0xFFFF, 2, 0, [1]), bank) == EX_ILLEGAL_ADDRESS  # the read's
    assert _exception_code(_rw(0, 1, 0xFFFE, [1, 2, 3]), bank) == EX_ILLEGAL_ADDRESS  # the write's
    assert bank.log == []
    # The last register of the address space is in range (the bank then has no such register).
    assert _exception_code(_rw(0xFFFF, 1, 0, [1]), bank) == EX_ILLEGAL_ADDRESS
    assert bank.log == [("write", 0, 1), ("read", FC_READ_HOLDING, 0xFFFF, 1)]


def test_a_count_error_comes_before_an_address_error():
    # The spec's order of checks: quantities and byte count (03), then the ranges (02).
    assert _exception_code(_rw(0xFFFF, 2, 0, [1] * 122), Bank()) == EX_ILLEGAL_VALUE
    assert _exception_code(_rw(0, 126, 0xFFFF, [1, 2]), Bank()) == EX_ILLEGAL_VALUE


def test_a_refused_write_reads_nothing():
    bank = _spec_bank()
    assert _exception_code(_rw(3, 6, 14, [1, 5000]), bank) == EX_ILLEGAL_VALUE
    assert bank.log == [("write", 14, 2)]
    assert bank.holding[14:16] == [0, 0]
    assert _exception_code(_rw(3, 6, 31, [1, 2]), bank) == EX_ILLEGAL_ADDRESS
    assert bank.log[-1] == ("write", 31, 2)


def test_a_failing_read_after_a_good_write_answers_the_read_and_keeps_the_write():
    bank = Bank()
    assert _exception_code(_rw(30, 4, 2, [7, 8]), bank) == EX_ILLEGAL_ADDRESS  # 30..33: past the bank
    assert bank.holding[2:4] == [7, 8]
    assert bank.log == [("write", 2, 2), ("read", FC_READ_HOLDING, 30, 4)]
    bank.read_fails = RuntimeError("sensor bus stuck")
    assert _exception_code(_rw(0, 1, 4, [9]), bank) == EX_DEVICE_FAILURE
    assert bank.holding[4] == 9
    bank.read_fails = ModbusException(FC_READ_HOLDING, 6)  # server busy
    assert _exception_code(_rw(0, 1, 5, [9]), bank) == 6


def test_exception_frame_bytes():
    assert _answer(_rw(0, 0, 0, [1]), Bank()) == _frame("01 97 03")
    assert _answer(_rw(0, 1, 0, [1], unit=0x0A, count=2), Bank()) == _frame("0a 97 03")


def test_broadcast_is_neither_executed_nor_answered():
    f = SlaveFramer(1)
    f.feed(_frame("00 17 0003 0006 000e 0003 06 00ff 00ff 00ff"))
    req = f.next_request()
    assert req.broadcast and req.function == 23 and req.read_count == 6
    bank = _spec_bank()
    assert _answer(req, bank) == b""
    assert bank.log == [] and bank.holding[14] == 0
    assert _answer(_rw(0, 0, 0, [1], unit=0), bank) == b""  # not even its exception


# --- framing -------------------------------------------------------------------


def test_frame_lengths_follow_the_byte_counts():
    # Request: 11 bytes before the values (byte count at frame offset 10), the values, the CRC; answer as 03.
    assert [request_length(SPEC_REQUEST, 0, k) for k in (2, 10, 11)] == [-1, -1, len(SPEC_REQUEST)] == [-1, -1, 19]
    assert [response_length(SPEC_ANSWER, 0, k) for k in (2, 3)] == [-1, len(SPEC_ANSWER)] == [-1, 17]
    assert response_length(_frame("01 97 02"), 0, 2) == 5


def test_a_request_for_us_inside_other_traffic():
    f = SlaveFramer(1)
    f.feed(READ_5 + RESPONSE_5 + SPEC_REQUEST + READ_1)
    assert _all(f) == [SPEC_REQ, Request(1, 3, 0, 10)]
    assert f.frames_other == 2 and f.frames_ok == 2 and f.bytes_dropped == 0


def test_another_units_request_and_answer_are_consumed_silently():
    request_7 = _frame("07 17 0003 0006 000e 0003 06 00ff 00ff 00ff")
    answer_7 = _frame("07 17 0c 00fe 0acd 0001 0003 000d 00ff")
    # With the silences reported, and without any: the framer stays in step either way.
    for resets in (True, False):
        f = SlaveFramer(1)
        got = []
        for chunk in (request_7, answer_7, SPEC_REQUEST):
            f.feed(chunk)
            got += _all(f)
            if resets:
                f.reset()
                got += _all(f)
        assert got == [SPEC_REQ], resets
        assert f.frames_other == 2 and f.frames_ok == 1
        assert f.bytes_dropped == 0 and f.crc_errors == 0


def test_garbage_before_and_after():
    f = SlaveFramer(1)
    f.feed(b"\x01\x17\xff\x00\x13" + SPEC_REQUEST + b"\x37\x42\x01" + READ_1)
    assert _all(f) == [SPEC_REQ, Request(1, 3, 0, 10)]
    assert f.bytes_dropped == 8


def test_a_frame_split_across_feeds():
    for cut in range(1, len(SPEC_REQUEST)):
        f = SlaveFramer(1)
        f.feed(SPEC_REQUEST[:cut])
        assert f.next_request() is None, cut
        f.feed(SPEC_REQUEST[cut:])
        assert _all(f) == [SPEC_REQ], cut
    f = SlaveFramer(1)
    got = []
    for i in range(len(SPEC_REQUEST)):
        f.feed(SPEC_REQUEST[i : i + 1])
        got += _all(f)
    assert got == [SPEC_REQ] and f.bytes_dropped == 0


def test_a_silence_inside_the_frame_drops_it():
    f = SlaveFramer(1)
    f.feed(SPEC_REQUEST[:11])
    f.reset()
    f.feed(SPEC_REQUEST)
    assert _all(f) == [SPEC_REQ]
    assert f.bytes_dropped == 11


# --- the master's builder ------------------------------------------------------


def test_builder_makes_the_spec_frame_and_the_slave_reads_it():
    assert build_read_write_multiple(1, 3, 6, 14, [0xFF, 0xFF, 0xFF]) == SPEC_REQUEST
    assert read_write_multiple_pdu(3, 6, 14, [0xFF, 0xFF, 0xFF]) == SPEC_REQUEST[1:-2]
    values = [0xFFFF - i for i in range(MAX_RW_WRITE_COUNT)]
    frame = build_read_write_multiple(247, 0xFF83, 125, 0x1234, values)
    assert len(frame) == 255
    f = SlaveFramer(247)
    f.feed(frame)
    assert f.next_request() == _rw(0xFF83, 125, 0x1234, values, unit=247)


def test_builder_refuses_bad_arguments():
    for args in (
        (0, 0, 1, 0, [1]),  # broadcast: no slave would execute it
        (1, 0, 0, 0, [1]),  # read count
        (1, 0, 126, 0, [1]),
        (1, 0x10000, 1, 0, [1]),
        (1, 0, 1, 0, []),  # write count
        (1, 0, 1, 0, [1] * 122),
        (1, 0, 1, 0, [0x10000]),
        (1, 0, 1, -1, [1]),
    ):
        raises(ValueError, build_read_write_multiple, *args)
    assert "1..121" in str(raises(ValueError, build_read_write_multiple, 1, 0, 1, 0, [1] * 122))
    assert "1..121" in str(raises(ValueError, build_read_write_multiple, 1, 0, 1, 0, []))
