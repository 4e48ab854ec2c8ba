# common-subset
from expect import raises

from protocols.errors import ModbusException
from protocols.modbus.crc import crc16
from protocols.modbus.master import (
    build_read,
    build_write_multiple,
    build_write_single,
    read_pdu,
    rtu_frame,
    write_multiple_pdu,
    write_single_pdu,
)
from protocols.modbus.pdu import (
    EX_ILLEGAL_ADDRESS,
    EX_ILLEGAL_VALUE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
)
from protocols.modbus.slave import SlaveFramer, respond


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


# --- slaves on one line, requests built here ------------------------------------


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
    """A master's requests and several slaves on one multi-drop line: every byte reaches every other drop.

    Bytes are delivered in uneven chunks; each transmission ends with a silence
    that every receiver sees (``reset()``), as an adapter would report it.
    """

    def __init__(self, units):
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
                self._answers.append(reply)
                others = [s for s, _ in self.slaves if s is not framer]
                self._pending.append((reply, others))

    def transact(self, request):
        """Send ``request``; return the answers that came back on the line (a list of frames)."""
        self._answers = []
        self._pending = []
        self._deliver(request, [s for s, _ in self.slaves])
        while self._pending:
            reply, receivers = self._pending.pop(0)
            self._deliver(reply, receivers)
        return self._answers

    def bank(self, unit):
        for f, bank in self.slaves:
            if f.unit == unit:
                return bank
        return None


def _words(*values):
    return " ".join("%04x" % v for v in values)


def test_pair_read_holding_and_input():
    bus = Bus([7])
    bus.bank(7).holding[2] = 42
    assert bus.transact(build_read(7, FC_READ_HOLDING, 0, 4)) == [_frame("07 03 08 " + _words(0, 0, 42, 0))]
    assert bus.transact(build_read(7, FC_READ_INPUT, 14, 2)) == [_frame("07 04 04 " + _words(714, 715))]


def test_pair_write_single_then_read_back():
    bus = Bus([7])
    request = build_write_single(7, 3, 999)
    assert bus.transact(request) == [request]  # the echo
    assert bus.transact(build_read(7, 3, 3, 1)) == [_frame("07 03 02 " + _words(999))]


def test_pair_write_multiple_then_read_back():
    bus = Bus([7])
    assert bus.transact(build_write_multiple(7, 10, [1, 2, 3])) == [_frame("07 10 000a 0003")]
    assert bus.transact(build_read(7, 3, 9, 5)) == [_frame("07 03 0a " + _words(0, 1, 2, 3, 0))]


def test_pair_exceptions_answer_the_master():
    bus = Bus([7])
    assert bus.transact(build_read(7, 3, 15, 2)) == [_frame("07 83 02")]
    assert bus.transact(build_write_single(7, 0, 5000)) == [_frame("07 86 03")]
    assert bus.transact(_frame("07 01 0000 0001")) == [_frame("07 81 01")]


def test_pair_on_a_shared_bus_every_slave_answers_only_for_itself():
    bus = Bus([3, 7, 12])
    for unit in (3, 7, 12):
        bus.transact(build_write_single(unit, 0, unit))
    for _ in range(3):
        for unit in (12, 3, 7):
            count = 125 if unit == 12 else 2
            answers = bus.transact(build_read(unit, FC_READ_INPUT, 0, count))
            values = [100 * unit + i for i in range(count)]
            assert answers == [_frame("%02x 04 %02x " % (unit, 2 * count) + _words(*values))]
            assert bus.transact(build_read(unit, 3, 0, 1)) == [_frame("%02x 03 02 " % unit + _words(unit))]
    for framer, _ in bus.slaves:
        assert framer.crc_errors == 0
        assert framer.frames_ok == 7


def test_pair_broadcast_write_reaches_every_slave_and_nobody_answers():
    bus = Bus([3, 7, 12])
    assert bus.transact(build_write_multiple(0, 4, [11, 22])) == []
    for unit in (3, 7, 12):
        assert bus.bank(unit).holding[4:6] == [11, 22]
    assert bus.transact(build_read(0, 3, 0, 1)) == []


def test_rtu_frames_are_unit_pdu_crc():
    assert rtu_frame(0x11, read_pdu(3, 0x6B, 3)) == build_read(0x11, 3, 0x6B, 3)
    assert rtu_frame(1, write_single_pdu(1, 3)) == bytes.fromhex("010600010003980b")
    assert rtu_frame(0x11, write_multiple_pdu(1, [10, 258])) == build_write_multiple(0x11, 1, [10, 258])
    assert read_pdu(4, 0x10, 1) == bytes.fromhex("0400100001")
    exc = raises(ValueError, rtu_frame, 248, read_pdu(3, 0, 1))
    assert "unit" in str(exc)
