# common-subset
from expect import raises

from protocols.errors import FrameError, ModbusException, ProtocolError
from protocols.modbus import (
    EX_ILLEGAL_ADDRESS,
    EX_ILLEGAL_FUNCTION,
    EX_ILLEGAL_VALUE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    MasterFramer,
    Response,
    SlaveFramer,
    build_read,
    build_write_multiple,
    build_write_single,
    crc16,
    respond,
)


def _frame(hexbody):
    """A frame from its hex body plus its CRC (the CRC itself is checked in test_modbus_crc)."""
    body = bytes.fromhex(hexbody.replace(" ", ""))
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


# --- builders --------------------------------------------------------------


def test_build_read_matches_known_frames():
    assert build_read(1, FC_READ_HOLDING, 0, 10) == bytes.fromhex("01030000000ac5cd")
    assert build_read(0x11, FC_READ_HOLDING, 0x6B, 3) == bytes.fromhex("1103006b00037687")
    assert build_read(5, FC_READ_HOLDING, 0, 2) == bytes.fromhex("050300000002c58f")
    assert build_read(1, FC_READ_INPUT, 0x10, 1) == _frame("01 04 0010 0001")


def test_build_write_single_matches_known_frames():
    assert build_write_single(1, 1, 3) == bytes.fromhex("010600010003980b")
    assert build_write_single(0, 0x10, 0xFFFF) == bytes.fromhex("00060010ffff886e")


def test_build_write_multiple_matches_known_frames():
    frame = build_write_multiple(0x11, 1, [0x000A, 0x0102])
    assert frame == bytes.fromhex("11100001000204000a0102c6f0")
    assert isinstance(frame, bytes)
    frame = build_write_multiple(1, 0xFF00, list(range(123)))
    assert len(frame) == 9 + 246 and frame[6] == 246 and frame[5] == 123


def test_builders_accept_any_sequence_of_values():
    assert build_write_multiple(1, 0, (1, 2)) == build_write_multiple(1, 0, [1, 2])


def test_builder_errors_name_the_argument_and_range():
    exc = raises(ValueError, build_read, 248, 3, 0, 1)
    assert str(exc) == "unit must be an int 0..247, got 248"
    exc = raises(ValueError, build_read, 1, 5, 0, 1)
    assert str(exc) == "function must be 3 (read holding) or 4 (read input), got 5"
    exc = raises(ValueError, build_read, 1, 3, 0x10000, 1)
    assert str(exc) == "address must be an int 0..65535, got 65536"
    exc = raises(ValueError, build_read, 1, 3, 0, 126)
    assert str(exc) == "count must be an int 1..125, got 126"
    exc = raises(ValueError, build_read, 1, 3, 0, 0)
    assert str(exc) == "count must be an int 1..125, got 0"
    exc = raises(ValueError, build_write_single, 1, -1, 0)
    assert str(exc) == "address must be an int 0..65535, got -1"
    exc = raises(ValueError, build_write_single, 1, 0, 0x10000)
    assert str(exc) == "value must be an int 0..65535, got 65536"
    exc = raises(ValueError, build_write_multiple, 1, 0, [])
    assert str(exc) == "values must hold 1..123 registers, got 0"
    exc = raises(ValueError, build_write_multiple, 1, 0, [0] * 124)
    assert str(exc) == "values must hold 1..123 registers, got 124"
    exc = raises(ValueError, build_write_multiple, 1, 0, [1, 2, -3])
    assert str(exc) == "values[2] must be an int 0..65535, got -3"


def test_builder_rejects_non_integers():
    raises(ValueError, build_read, "1", 3, 0, 1)
    raises(ValueError, build_read, 1, 3, 1.0, 1)
    raises(ValueError, build_write_single, 1, 0, True)
    raises(ValueError, build_write_multiple, 1, 0, [1, None])


# --- master framer -----------------------------------------------------------


def _response(framer, data):
    framer.feed(data)
    return framer.next_response()


def test_read_response():
    m = MasterFramer()
    m.expect(0x11, FC_READ_HOLDING, 3)
    resp = _response(m, _frame("11 03 06 022b 0000 0064"))
    assert resp == Response(0x11, 3, 0, 3, [0x022B, 0, 0x64])
    assert resp.values == [0x022B, 0, 0x64] and resp.unit == 0x11 and resp.function == 3
    assert m.next_response() is None  # the transaction is over


def test_read_response_fed_byte_by_byte():
    m = MasterFramer()
    m.expect(1, FC_READ_INPUT, 2)
    frame = _frame("01 04 04 ffff 8000")
    for i in range(len(frame) - 1):
        m.feed(frame[i : i + 1])
        assert m.next_response() is None
    m.feed(frame[-1:])
    assert m.next_response().values == [0xFFFF, 0x8000]


def test_write_single_response():
    m = MasterFramer()
    m.expect(1, FC_WRITE_SINGLE, address=1)
    resp = _response(m, bytes.fromhex("010600010003980b"))
    assert resp.address == 1 and resp.value == 3 and resp.values == [3] and resp.count == 1


def test_write_multiple_response():
    m = MasterFramer()
    m.expect(0x11, FC_WRITE_MULTIPLE, 2, 1)
    resp = _response(m, _frame("11 10 0001 0002"))
    assert resp.address == 1 and resp.count == 2 and resp.function == 16


def test_exception_response_raises_modbus_exception():
    m = MasterFramer()
    m.expect(1, FC_READ_HOLDING, 1)
    exc = raises(ModbusException, _response, m, _frame("01 83 02"))
    assert exc.function == 3 and exc.code == EX_ILLEGAL_ADDRESS
    assert isinstance(exc, ProtocolError)
    assert m.next_response() is None


def test_bad_crc_raises_frame_error():
    m = MasterFramer()
    m.expect(1, FC_READ_HOLDING, 1)
    frame = bytearray(_frame("01 03 02 0007"))
    frame[3] ^= 0x10
    exc = raises(FrameError, _response, m, bytes(frame))
    assert "CRC" in str(exc)
    assert m.next_response() is None


def test_bad_crc_on_an_exception_response_is_a_frame_error():
    m = MasterFramer()
    m.expect(1, FC_READ_HOLDING, 1)
    frame = bytearray(_frame("01 83 02"))
    frame[2] = 3
    assert "CRC" in str(raises(FrameError, _response, m, bytes(frame)))


def test_wrong_unit_raises_frame_error():
    m = MasterFramer()
    m.expect(1, FC_READ_HOLDING, 1)
    exc = raises(FrameError, _response, m, _frame("02 03 02 0007"))
    assert str(exc) == "wrong unit: expected 1, got 2"


def test_wrong_function_raises_frame_error():
    m = MasterFramer()
    m.expect(1, FC_READ_HOLDING, 1)
    exc = raises(FrameError, _response, m, _frame("01 04 02 0007"))
    assert str(exc) == "wrong function: expected 3, got 4"
    m.expect(1, FC_READ_HOLDING, 1)
    exc = raises(FrameError, _response, m, b"\x01\x64\x00")  # no length for this code
    assert str(exc) == "wrong function: expected 3, got 100"
    m.expect(1, FC_WRITE_SINGLE)
    assert "wrong function" in str(raises(FrameError, _response, m, _frame("01 90 02")))


def test_wrong_byte_count_raises_frame_error():
    m = MasterFramer()
    m.expect(1, FC_READ_HOLDING, 2)
    exc = raises(FrameError, _response, m, _frame("01 03 02 0007"))
    assert str(exc) == "wrong byte count: expected 4 for 2 registers, got 2"


def test_wrong_echo_raises_frame_error():
    m = MasterFramer()
    m.expect(1, FC_WRITE_SINGLE, address=7)
    assert "address" in str(raises(FrameError, _response, m, _frame("01 06 0008 0001")))
    m.expect(1, FC_WRITE_MULTIPLE, 3, 0)
    assert "count" in str(raises(FrameError, _response, m, _frame("01 10 0000 0002")))


def test_truncated_response_waits_then_fails_at_silence():
    m = MasterFramer()
    m.expect(1, FC_READ_HOLDING, 3)
    frame = _frame("01 03 06 0001 0002 0003")
    assert _response(m, frame[:6]) is None
    assert m.next_response() is None
    m.reset()
    exc = raises(FrameError, m.next_response)
    assert str(exc) == "truncated response: 6 bytes, then silence"
    assert m.next_response() is None


def test_silence_before_any_byte_is_no_error():
    m = MasterFramer()
    m.expect(1, FC_READ_HOLDING, 3)
    m.reset()
    assert m.next_response() is None
    assert _response(m, _frame("01 03 06 0001 0002 0003")).values == [1, 2, 3]


def test_expect_discards_bytes_of_an_earlier_transaction():
    m = MasterFramer()
    m.feed(b"\x01\x03\x02")
    m.expect(1, FC_READ_HOLDING, 1)
    assert _response(m, _frame("01 03 02 0009")).values == [9]


def test_nothing_expected_returns_none():
    m = MasterFramer()
    m.feed(_frame("01 03 02 0009"))
    assert m.next_response() is None


def test_expect_checks_its_arguments():
    m = MasterFramer()
    assert "unit" in str(raises(ValueError, m.expect, 0, 3, 1))
    assert "count" in str(raises(ValueError, m.expect, 1, 3, 0))
    assert "count" in str(raises(ValueError, m.expect, 1, 16, 124))
    assert "function" in str(raises(ValueError, m.expect, 1, 1, 1))
    assert "address" in str(raises(ValueError, m.expect, 1, 6, 1, 0x10000))


# --- master and slave paired in memory ----------------------------------------


class Bank:
    """16 holding registers (values <= 1000) and 125 input registers."""

    def __init__(self, base=0):
        self.holding = [0] * 16
        self.input = [base + i for i in range(125)]

    def read(self, function, address, count, values_out):
        table = self.holding if function == FC_READ_HOLDING else self.input
        if address + count > len(table):
            raise ModbusException(function, EX_ILLEGAL_ADDRESS)
        for i in range(count):
            values_out[i] = table[address + i]

    def write(self, address, values, count):
        fc = FC_WRITE_SINGLE if count == 1 else FC_WRITE_MULTIPLE
        if address + count > len(self.holding):
            raise ModbusException(fc, EX_ILLEGAL_ADDRESS)
        for i in range(count):
            if values[i] > 1000:
                raise ModbusException(fc, EX_ILLEGAL_VALUE)
        for i in range(count):
            self.holding[address + i] = values[i]


class Bus:
    """A master and several slaves on one multi-drop line: every byte reaches every other drop.

    Bytes are delivered in uneven chunks; each transmission ends with a silence
    that every receiver sees (``reset()``), as an adapter would report it.
    """

    def __init__(self, units):
        self.master = MasterFramer()
        self.slaves = [(SlaveFramer(u), Bank(100 * u)) for u in units]
        self.out = bytearray(256)
        self._step = 1

    def _deliver(self, data, receivers):
        i = 0
        while i < len(data):
            chunk = data[i : i + self._step]
            i += self._step
            self._step = self._step % 5 + 1
            for r in receivers:
                r.feed(chunk)
                if isinstance(r, SlaveFramer):
                    self._serve(r)
        for r in receivers:
            r.reset()
            if isinstance(r, SlaveFramer):
                self._serve(r)

    def _serve(self, framer):
        bank = None
        for f, b in self.slaves:
            if f is framer:
                bank = b
        while True:
            req = framer.next_request()
            if req is None:
                return
            n = respond(req, bank, self.out)
            if n:
                reply = bytes(self.out[:n])
                others = [self.master] + [s for s, _ in self.slaves if s is not framer]
                self._pending.append((reply, others))

    def transact(self, request, unit, function, count=0):
        """Send ``request``; return the master's Response (or raise), None if nobody answered."""
        if unit:
            self.master.expect(unit, function, count)
        self._pending = []
        self._deliver(request, [s for s, _ in self.slaves])
        while self._pending:
            reply, receivers = self._pending.pop(0)
            self._deliver(reply, receivers)
        if not unit:
            return None
        return self.master.next_response()

    def bank(self, unit):
        for f, bank in self.slaves:
            if f.unit == unit:
                return bank
        return None


def test_pair_read_holding_and_input():
    bus = Bus([7])
    bus.bank(7).holding[2] = 42
    resp = bus.transact(build_read(7, FC_READ_HOLDING, 0, 4), 7, FC_READ_HOLDING, 4)
    assert resp.values == [0, 0, 42, 0]
    resp = bus.transact(build_read(7, FC_READ_INPUT, 14, 2), 7, FC_READ_INPUT, 2)
    assert resp.values == [714, 715]


def test_pair_write_single_then_read_back():
    bus = Bus([7])
    resp = bus.transact(build_write_single(7, 3, 999), 7, FC_WRITE_SINGLE)
    assert resp.address == 3 and resp.value == 999
    assert bus.transact(build_read(7, 3, 3, 1), 7, 3, 1).values == [999]


def test_pair_write_multiple_then_read_back():
    bus = Bus([7])
    resp = bus.transact(build_write_multiple(7, 10, [1, 2, 3]), 7, FC_WRITE_MULTIPLE, 3)
    assert resp.address == 10 and resp.count == 3
    assert bus.transact(build_read(7, 3, 9, 5), 7, 3, 5).values == [0, 1, 2, 3, 0]


def test_pair_exceptions_reach_the_master():
    bus = Bus([7])
    exc = raises(ModbusException, bus.transact, build_read(7, 3, 15, 2), 7, 3, 2)
    assert exc.code == EX_ILLEGAL_ADDRESS and exc.function == 3
    exc = raises(ModbusException, bus.transact, build_write_single(7, 0, 5000), 7, 6)
    assert exc.code == EX_ILLEGAL_VALUE and exc.function == 6
    # The master expected a read; the slave refused function 01 with 0x81 01.
    exc = raises(FrameError, bus.transact, _frame("07 01 0000 0001"), 7, 3, 1)
    assert str(exc) == "wrong function: expected 3, got 129"
    req = SlaveFramer(7)
    req.feed(_frame("07 01 0000 0001"))
    out = bytearray(256)
    n = respond(req.next_request(), Bank(), out)
    assert bytes(out[:n]) == _frame("07 81 01")
    assert out[2] == EX_ILLEGAL_FUNCTION


def test_pair_on_a_shared_bus_every_slave_answers_only_for_itself():
    bus = Bus([3, 7, 12])
    for unit in (3, 7, 12):
        bus.transact(build_write_single(unit, 0, unit), unit, 6)
    for _ in range(3):
        for unit in (12, 3, 7):
            resp = bus.transact(
                build_read(unit, FC_READ_INPUT, 0, 125 if unit == 12 else 2),
                unit,
                4,
                125 if unit == 12 else 2,
            )
            assert resp.unit == unit and resp.values[0] == 100 * unit
            assert bus.transact(build_read(unit, 3, 0, 1), unit, 3, 1).values == [unit]
    for framer, _ in bus.slaves:
        assert framer.crc_errors == 0
        assert framer.frames_ok == 7


def test_pair_broadcast_write_reaches_every_slave_and_nobody_answers():
    bus = Bus([3, 7, 12])
    assert bus.transact(build_write_multiple(0, 4, [11, 22]), 0, 16) is None
    for unit in (3, 7, 12):
        assert bus.bank(unit).holding[4:6] == [11, 22]
    assert bus.transact(build_read(0, 3, 0, 1), 0, 3) is None
