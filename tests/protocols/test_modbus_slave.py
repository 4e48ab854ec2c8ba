# common-subset
import gc

from expect import raises

from protocols.errors import ModbusException
from protocols.modbus.crc import crc16
from protocols.modbus.pdu import (
    EX_DEVICE_FAILURE,
    EX_ILLEGAL_ADDRESS,
    EX_ILLEGAL_FUNCTION,
    EX_ILLEGAL_VALUE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    Request,
)
from protocols.modbus.slave import SlaveFramer, respond


def _frame(hexbody):
    """A frame from its hex body plus its CRC (the CRC itself is checked in test_modbus_crc)."""
    body = bytes.fromhex(hexbody.replace(" ", ""))
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


READ_1 = bytes.fromhex("01030000000ac5cd")  # unit 1, read holding 0..9
READ_5 = _frame("05 03 0000 0002")  # same for unit 5
RESPONSE_5 = _frame("05 03 04 0001 0002")  # unit 5 answering READ_5
EXCEPTION_5 = _frame("05 83 02")
WRITE_1 = _frame("01 06 0002 1234")
WRITE_MULTI_1 = _frame("01 10 0001 0002 04 000a 0102")


class Bank:
    """A tiny register bank: 16 holding and 16 input registers; holding values must be <= 1000."""

    def __init__(self):
        self.holding = [0] * 16
        self.input = [100 + i for i in range(16)]
        self.fail = None
        self.writes = 0

    def read(self, function, address, count, values_out):
        if self.fail is not None:
            raise self.fail
        table = self.holding if function == FC_READ_HOLDING else self.input
        if address + count > len(table):
            raise ModbusException(function, EX_ILLEGAL_ADDRESS)
        for i in range(count):
            values_out[i] = table[address + i]

    def write(self, address, values, count):
        if self.fail is not None:
            raise self.fail
        fc = FC_WRITE_SINGLE if count == 1 else FC_WRITE_MULTIPLE
        if address + count > len(self.holding):
            raise ModbusException(fc, EX_ILLEGAL_ADDRESS)
        for i in range(count):
            if values[i] > 1000:
                raise ModbusException(fc, EX_ILLEGAL_VALUE)
        for i in range(count):
            self.holding[address + i] = values[i]
        self.writes += 1


def _all(framer):
    out = []
    while True:
        req = framer.next_request()
        if req is None:
            return out
        out.append(req)


def _answer(req, bank=None):
    out = bytearray(256)
    n = respond(req, bank if bank is not None else Bank(), out)
    return bytes(out[:n])


def _exception_code(req, bank=None):
    resp = _answer(req, bank)
    assert len(resp) == 5, resp
    assert resp[1] == req.function | 0x80
    assert crc16(resp, 0, 3) == resp[3] | resp[4] << 8
    return resp[2]


# --- framing ---------------------------------------------------------------


def test_read_request_fed_byte_by_byte():
    f = SlaveFramer(1)
    for i in range(len(READ_1) - 1):
        f.feed(READ_1[i : i + 1])
        assert f.next_request() is None
    f.feed(READ_1[-1:])
    req = f.next_request()
    assert req == Request(1, FC_READ_HOLDING, 0, 10)
    assert req.unit == 1 and req.function == 3 and req.address == 0 and req.count == 10
    assert req.broadcast is False and req.values is None
    assert f.next_request() is None
    assert f.frames_ok == 1 and f.crc_errors == 0 and f.bytes_dropped == 0


def test_several_frames_in_one_chunk():
    f = SlaveFramer(1)
    f.feed(READ_1 + WRITE_1 + WRITE_MULTI_1 + _frame("01 04 0010 0001"))
    reqs = _all(f)
    assert [r.function for r in reqs] == [3, 6, 16, 4]
    assert reqs[1].address == 2 and reqs[1].values == [0x1234] and reqs[1].value == 0x1234
    assert reqs[2].address == 1 and reqs[2].count == 2 and reqs[2].byte_count == 4
    assert reqs[2].values == [0x000A, 0x0102]
    assert reqs[3].address == 0x10 and reqs[3].count == 1
    assert f.frames_ok == 4 and f.bytes_dropped == 0


def test_accepts_bytearray_and_memoryview_chunks():
    f = SlaveFramer(1)
    f.feed(bytearray(READ_1[:3]))
    f.feed(memoryview(READ_1)[3:])
    assert f.next_request() == Request(1, 3, 0, 10)


def test_frames_for_other_units_are_consumed_silently():
    f = SlaveFramer(1)
    f.feed(READ_5 + _frame("07 10 0000 0001 02 0005") + _frame("09 06 0001 0001") + READ_1)
    assert _all(f) == [Request(1, 3, 0, 10)]
    assert f.frames_other == 3 and f.frames_ok == 1
    assert f.crc_errors == 0 and f.bytes_dropped == 0


def test_other_slaves_responses_are_consumed():
    f = SlaveFramer(1)
    for chunk in (READ_5, RESPONSE_5, EXCEPTION_5, _frame("05 10 0000 0002"), READ_1):
        f.feed(chunk)
        reqs = _all(f)
        f.reset()  # the adapter saw the silence after each frame
        reqs += _all(f)
    assert reqs == [Request(1, 3, 0, 10)]
    assert f.crc_errors == 0 and f.bytes_dropped == 0
    assert f.frames_other == 4


def test_a_long_response_of_another_slave_is_consumed_without_silence():
    f = SlaveFramer(1)
    words = "".join("%04x" % (i * 0x0101) for i in range(125))
    response = _frame("05 03 fa " + words)
    assert len(response) == 255
    f.feed(response[:100])
    assert f.next_request() is None
    f.feed(response[100:])
    assert f.next_request() is None
    f.feed(READ_1)
    assert _all(f) == [Request(1, 3, 0, 10)]
    assert f.frames_other == 1 and f.crc_errors == 0


def test_responses_in_the_stream_without_silences_are_hunted_through():
    # No reset() at all: the framer must still find every request for us.
    f = SlaveFramer(1)
    stream = READ_5 + RESPONSE_5 + READ_1 + EXCEPTION_5 + WRITE_1 + RESPONSE_5 + READ_1 + READ_1
    reqs = []
    for i in range(len(stream)):
        f.feed(stream[i : i + 1])
        reqs += _all(f)
    assert [r.function for r in reqs] == [3, 6, 3, 3]


def test_garbage_then_a_valid_frame_is_recovered():
    f = SlaveFramer(1)
    f.feed(b"\x01\x03\xff\x00\x13\x37\x42" + READ_1)
    assert _all(f) == [Request(1, 3, 0, 10)]
    assert f.bytes_dropped == 7
    assert f.frames_ok == 1


def test_garbage_without_known_function_codes_is_dropped_byte_by_byte():
    f = SlaveFramer(1)
    f.feed(b"\xff\xfe\x00\x00\x99\x64")
    assert f.next_request() is None
    f.feed(READ_1)
    assert f.next_request() == Request(1, 3, 0, 10)


def test_bad_crc_is_ignored_and_counted_once():
    f = SlaveFramer(1)
    bad = bytearray(READ_1)
    bad[-1] ^= 0x40
    f.feed(bad)
    assert f.next_request() is None
    f.reset()
    assert f.next_request() is None
    assert f.crc_errors == 1
    assert f.bytes_dropped == len(bad)
    assert f.frames_ok == 0
    f.feed(READ_1)
    assert f.next_request() == Request(1, 3, 0, 10)
    assert f.crc_errors == 1


def test_bad_crc_followed_by_a_good_frame_in_one_chunk():
    f = SlaveFramer(1)
    bad = bytearray(WRITE_1)
    bad[4] ^= 0x01
    f.feed(bytes(bad) + READ_1)
    assert _all(f) == [Request(1, 3, 0, 10)]
    assert f.crc_errors == 1 and f.bytes_dropped == len(bad)


def test_reset_drops_a_partial_frame():
    f = SlaveFramer(1)
    f.feed(READ_1[:5])
    assert f.next_request() is None
    f.reset()
    assert f.bytes_dropped == 5
    assert f.buffered() == 0
    f.feed(READ_1)
    assert f.next_request() == Request(1, 3, 0, 10)
    assert f.crc_errors == 0


def test_without_reset_a_partial_frame_is_hunted_through():
    f = SlaveFramer(1)
    f.feed(READ_1[:5] + READ_1)
    assert _all(f) == [Request(1, 3, 0, 10)]
    assert f.bytes_dropped == 5


def test_reset_keeps_a_complete_frame_after_a_partial_one():
    # Bytes 0x10 ("write multiple") near the front ask for a long frame; at the
    # silence the framer knows it cannot be, and finds the request behind it.
    f = SlaveFramer(1)
    f.feed(b"\x01\x10\x00\x00\x00\x10\xf0" + READ_1)
    assert f.next_request() is None  # could still be a 249-byte write
    f.reset()
    assert f.next_request() == Request(1, 3, 0, 10)
    assert f.next_request() is None


def test_reset_on_an_empty_buffer_is_harmless():
    f = SlaveFramer(1)
    f.reset()
    f.reset()
    f.feed(READ_1)
    assert f.next_request() == Request(1, 3, 0, 10)
    assert f.bytes_dropped == 0


def test_broadcast_write_is_returned_and_answered_with_nothing():
    f = SlaveFramer(1)
    bank = Bank()
    f.feed(_frame("00 06 0003 0007") + _frame("00 10 0000 0002 04 0001 0002"))
    reqs = _all(f)
    assert [r.broadcast for r in reqs] == [True, True]
    out = bytearray(256)
    assert respond(reqs[0], bank, out) == 0
    assert respond(reqs[1], bank, out) == 0
    assert bank.holding[:4] == [1, 2, 0, 7]


def test_broadcast_read_is_ignored():
    f = SlaveFramer(1)
    f.feed(_frame("00 03 0000 0001"))
    req = f.next_request()
    assert req.broadcast
    bank = Bank()
    bank.fail = RuntimeError("must not be called")
    out = bytearray(256)
    assert respond(req, bank, out) == 0


def test_broadcast_with_an_error_stays_silent():
    out = bytearray(256)
    assert respond(Request(0, FC_WRITE_SINGLE, 0, 1, [5000]), Bank(), out) == 0
    assert respond(Request(0, 1, 0, 1), Bank(), out) == 0


def test_unit_may_change():
    f = SlaveFramer(1)
    f.feed(READ_5)
    assert f.next_request() is None
    f.unit = 5
    f.feed(READ_5)
    assert f.next_request() == Request(5, 3, 0, 2)


def test_unit_is_checked():
    assert "1..247" in str(raises(ValueError, SlaveFramer, 0))
    raises(ValueError, SlaveFramer, 248)


def test_unsupported_public_function_is_returned_for_an_illegal_function_answer():
    f = SlaveFramer(1)
    f.feed(_frame("01 01 0000 0008") + _frame("01 11") + _frame("01 0f 0000 000a 02 ff 03"))
    reqs = _all(f)
    assert [r.function for r in reqs] == [1, 17, 15]
    for req in reqs:
        assert _exception_code(req) == EX_ILLEGAL_FUNCTION


def test_a_function_code_no_master_sends_is_treated_as_garbage():
    f = SlaveFramer(1)
    f.feed(_frame("01 64 0000 0001") + READ_1)
    assert _all(f) == [Request(1, 3, 0, 10)]
    assert f.bytes_dropped == 8


def test_units_above_247_are_not_frames():
    f = SlaveFramer(1)
    f.feed(_frame("f8 03 0000 0001") + READ_1)
    assert _all(f) == [Request(1, 3, 0, 10)]


def test_overflow_drops_the_oldest_bytes_and_recovers():
    f = SlaveFramer(1)
    f.feed(b"\x01\x10\x00\x00\x00\x7b\xf6" + b"\xaa" * 240)  # a write that never completes
    assert f.next_request() is None
    f.feed(READ_1 + READ_1)  # does not fit: the oldest bytes go
    assert f.bytes_dropped >= 7
    reqs = _all(f)
    assert reqs[-1] == Request(1, 3, 0, 10)


def test_a_chunk_larger_than_the_buffer_keeps_its_end():
    f = SlaveFramer(1)
    f.feed(b"\x55" * 300 + READ_1)
    assert _all(f) == [Request(1, 3, 0, 10)]
    assert f.bytes_dropped == 300


def test_a_long_stream_fed_in_odd_chunks():
    f = SlaveFramer(1)
    stream = (READ_5 + RESPONSE_5 + READ_1 + WRITE_MULTI_1 + EXCEPTION_5 + b"\x00\x03\x13") * 40
    got = 0
    i = 0
    step = 1
    while i < len(stream):
        f.feed(stream[i : i + step])
        i += step
        step = step % 13 + 1
        got += len(_all(f))
    f.reset()
    got += len(_all(f))
    assert got == 80
    assert f.frames_ok == 80


# --- respond ---------------------------------------------------------------


def test_read_holding_response_matches_the_spec_example():
    # Modbus over Serial Line example: unit 0x11 reads 0x6B..0x6D -> 022B 0000 0064.
    bank = Bank()
    bank.holding = [0] * 0x70
    bank.holding[0x6B] = 0x022B
    bank.holding[0x6D] = 0x0064
    f = SlaveFramer(0x11)
    f.feed(bytes.fromhex("1103006b00037687"))
    assert _answer(f.next_request(), bank) == _frame("11 03 06 022b 0000 0064")


def test_read_input_response():
    resp = _answer(Request(1, FC_READ_INPUT, 2, 3))
    assert resp == _frame("01 04 06 0066 0067 0068")


def test_read_of_125_registers_fills_a_255_byte_frame():
    class Wide:
        def read(self, function, address, count, values_out):
            for i in range(count):
                values_out[i] = 0xFFFF - i

    resp = _answer(Request(1, 3, 0, 125), Wide())
    assert len(resp) == 255
    assert resp[2] == 250 and resp[3] == 0xFF and resp[4] == 0xFF
    assert crc16(resp, 0, 253) == resp[253] | resp[254] << 8


def test_write_single_echoes_the_request():
    bank = Bank()
    f = SlaveFramer(1)
    f.feed(_frame("01 06 0002 0123"))
    assert _answer(f.next_request(), bank) == _frame("01 06 0002 0123")
    assert bank.holding[2] == 0x123


def test_write_multiple_answers_address_and_count():
    bank = Bank()
    f = SlaveFramer(1)
    f.feed(WRITE_MULTI_1)
    assert _answer(f.next_request(), bank) == _frame("01 10 0001 0002")
    assert bank.holding[1:3] == [10, 0x0102]


def test_illegal_function():
    assert _exception_code(Request(1, 2, 0, 1)) == EX_ILLEGAL_FUNCTION
    assert _exception_code(Request(1, 0x2B)) == EX_ILLEGAL_FUNCTION


def test_illegal_address_from_the_bank():
    assert _exception_code(Request(1, FC_READ_HOLDING, 15, 2)) == EX_ILLEGAL_ADDRESS
    assert _exception_code(Request(1, FC_WRITE_SINGLE, 16, 1, [1])) == EX_ILLEGAL_ADDRESS


def test_illegal_address_past_the_address_space():
    assert _exception_code(Request(1, FC_READ_INPUT, 0xFFFF, 2)) == EX_ILLEGAL_ADDRESS
    req = Request(1, FC_WRITE_MULTIPLE, 0xFFFF, 2, [1, 2])
    req.byte_count = 4
    assert _exception_code(req) == EX_ILLEGAL_ADDRESS


def test_illegal_value_for_counts_out_of_range():
    assert _exception_code(Request(1, FC_READ_HOLDING, 0, 0)) == EX_ILLEGAL_VALUE
    assert _exception_code(Request(1, FC_READ_HOLDING, 0, 126)) == EX_ILLEGAL_VALUE
    assert _exception_code(Request(1, FC_READ_INPUT, 0, 0xFFFF)) == EX_ILLEGAL_VALUE
    req = Request(1, FC_WRITE_MULTIPLE, 0, 124, [0] * 124)
    req.byte_count = 248
    assert _exception_code(req) == EX_ILLEGAL_VALUE
    req = Request(1, FC_WRITE_MULTIPLE, 0, 0, [])
    assert _exception_code(req) == EX_ILLEGAL_VALUE


def test_illegal_value_for_a_byte_count_mismatch_from_the_wire():
    f = SlaveFramer(1)
    f.feed(_frame("01 10 0000 0002 06 0001 0002 0003"))
    req = f.next_request()
    assert req.byte_count == 6 and req.count == 2
    assert _exception_code(req) == EX_ILLEGAL_VALUE


def test_illegal_value_from_the_bank_and_nothing_written():
    bank = Bank()
    req = Request(1, FC_WRITE_MULTIPLE, 0, 2, [5, 5000])
    req.byte_count = 4
    assert _exception_code(req, bank) == EX_ILLEGAL_VALUE
    assert bank.holding[:2] == [0, 0] and bank.writes == 0


def test_device_failure_when_the_bank_raises_anything_else():
    bank = Bank()
    bank.fail = RuntimeError("sensor bus stuck")
    assert _exception_code(Request(1, FC_READ_INPUT, 0, 1), bank) == EX_DEVICE_FAILURE
    assert _exception_code(Request(1, FC_WRITE_SINGLE, 0, 1, [1]), bank) == EX_DEVICE_FAILURE
    bank.fail = KeyError(3)
    assert _exception_code(Request(1, FC_READ_HOLDING, 0, 1), bank) == EX_DEVICE_FAILURE


def test_device_failure_when_the_bank_leaves_a_value_that_is_no_register():
    class Untouched:
        def read(self, function, address, count, values_out):
            pass

    for bad in (0x10000, -1, None, 1.5):
        scratch = [bad] * 125
        out = bytearray(256)
        n = respond(Request(1, 3, 0, 2), Untouched(), out, scratch)
        assert bytes(out[:n]) == _frame("01 83 04"), bad


def test_a_bank_exception_code_is_passed_through():
    bank = Bank()
    bank.fail = ModbusException(3, 6)  # 06: server busy
    assert _exception_code(Request(1, 3, 0, 1), bank) == 6
    bank.fail = ModbusException(3, 0)  # no such code: the node says device failure
    assert _exception_code(Request(1, 3, 0, 1), bank) == EX_DEVICE_FAILURE


def test_exception_frame_bytes():
    assert _answer(Request(0x0A, 0x01, 0, 1)) == _frame("0a 81 01")
    assert _answer(Request(1, 3, 0, 0)) == _frame("01 83 03")


def test_respond_uses_the_scratch_buffer_given():
    seen = []

    class Spy:
        def read(self, function, address, count, values_out):
            seen.append(values_out)
            values_out[0] = 7

    scratch = [0] * 125
    _out = bytearray(256)
    n = respond(Request(1, 4, 0, 1), Spy(), _out, scratch)
    assert seen[0] is scratch and bytes(_out[:n]) == _frame("01 04 02 0007")


# --- memory ----------------------------------------------------------------


def test_read_and_respond_allocate_little_on_micropython():
    if not hasattr(gc, "mem_alloc"):  # CPython: nothing to measure
        return
    f = SlaveFramer(1)
    bank = Bank()
    out = bytearray(256)

    def once():
        f.feed(READ_1)
        req = f.next_request()
        respond(req, bank, out)

    for _ in range(10):
        once()
    rounds = 100
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        for _ in range(rounds):
            once()
        per_frame = (gc.mem_alloc() - before) // rounds
    finally:
        gc.enable()
    print(f"modbus slave: read request + respond allocates {per_frame} bytes per frame")
    assert per_frame < 200, per_frame
