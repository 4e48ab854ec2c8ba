# common-subset
"""Update file records (protocols.update) and functions 20/21 in the slave, on both interpreters."""

from expect import raises

from protocols.errors import ModbusException
from protocols.modbus.crc import crc16
from protocols.modbus.slave import SlaveFramer, respond
from protocols.update import (
    BEGIN_WORDS,
    FILE_CONTROL,
    FILE_IMAGE,
    OP_BEGIN,
    begin_record,
    hmac_sha256,
    mac,
    parse_status,
)


def _frame(body):
    crc = crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


class _Files:
    """A node's file records in memory: the status record reads back what was last written."""

    def __init__(self):
        self.written = []

    def read_record(self, file, record, count, values):
        if file != FILE_CONTROL:
            raise ModbusException(20, 2)
        for i in range(count):
            values[i] = 100 + i

    def write_record(self, file, record, data):
        self.written.append((file, record, bytes(data)))


class _Bank:
    def __init__(self, files=None):
        self.files = files


def _request(unit, fc, sub):
    framer = SlaveFramer(1)
    framer.feed(_frame(bytes((unit, fc, len(sub))) + sub))
    return framer.next_request()


def test_hmac_matches_rfc_4231_case_2():
    digest = hmac_sha256(b"Jefe", b"what do ya want for nothing?")
    assert digest == bytes.fromhex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


def test_the_mac_covers_role_size_health_and_hash():
    digest = bytes(range(32))
    base = mac(b"k", "lamp", 1000, 30, digest)
    assert len(base) == 32
    assert base != mac(b"k", "meter", 1000, 30, digest)
    assert base != mac(b"k", "lamp", 1001, 30, digest)
    assert base != mac(b"k", "lamp", 1000, 31, digest)
    assert base != mac(b"other", "lamp", 1000, 30, digest)
    assert base != mac(b"k", "lamp", 1000, 30, bytes(32))


def test_begin_record_layout_and_bounds():
    record = begin_record(70000, 30, bytes(range(32)), bytes(range(32, 64)))
    assert len(record) == 2 * BEGIN_WORDS
    assert record[:8] == bytes((0, OP_BEGIN, 0, 1, 0x11, 0x70, 0, 30))
    raises(ValueError, begin_record, 0, 30, bytes(32), bytes(32))
    raises(ValueError, begin_record, 100, 0, bytes(32), bytes(32))
    raises(ValueError, begin_record, 100, 30, bytes(31), bytes(32))


def test_status_words_are_parsed():
    words = [1, 0, 480, 1, 0x1170, 0, 1, 0, 0, 2, 1, 240]
    data = bytes(b for w in words for b in (w >> 8, w & 0xFF))
    status = parse_status(data)
    assert status["state"] == 1 and status["received"] == 480 and status["size"] == 70000
    assert status["active"] == 1 and status["rolled_back"] == 2 and status["chunk"] == 240


def test_a_file_record_write_is_handed_over_and_echoed():
    files = _Files()
    sub = bytes((6, 0, FILE_IMAGE, 0, 7, 0, 2, 0xDE, 0xAD, 0xBE, 0xEF))
    req = _request(1, 21, sub)
    out = bytearray(256)
    n = respond(req, _Bank(files), out)
    assert files.written == [(FILE_IMAGE, 7, b"\xde\xad\xbe\xef")]
    assert bytes(out[:n]) == _frame(bytes((1, 21, len(sub))) + sub)


def test_a_file_record_read_answers_the_words():
    req = _request(1, 20, bytes((6, 0, FILE_CONTROL, 0, 0, 0, 3)))
    out = bytearray(256)
    n = respond(req, _Bank(_Files()), out)
    assert bytes(out[:n]) == _frame(bytes((1, 20, 8, 7, 6, 0, 100, 0, 101, 0, 102)))


def test_file_record_errors_are_modbus_exceptions():
    out = bytearray(256)
    # a node without file records: illegal function
    n = respond(_request(1, 20, bytes((6, 0, 2, 0, 0, 0, 3))), _Bank(), out)
    assert bytes(out[:n]) == _frame(bytes((1, 0x94, 1)))
    # a reference type other than 6: illegal value
    n = respond(_request(1, 20, bytes((7, 0, 2, 0, 0, 0, 3))), _Bank(_Files()), out)
    assert bytes(out[:n]) == _frame(bytes((1, 0x94, 3)))
    # the handler refuses the file: its code
    n = respond(_request(1, 20, bytes((6, 0, 9, 0, 0, 0, 3))), _Bank(_Files()), out)
    assert bytes(out[:n]) == _frame(bytes((1, 0x94, 2)))
    # a write whose byte count does not match its record length
    n = respond(_request(1, 21, bytes((6, 0, 1, 0, 0, 0, 3, 1, 2))), _Bank(_Files()), out)
    assert bytes(out[:n]) == _frame(bytes((1, 0x95, 3)))


def test_a_broadcast_file_write_is_taken_without_an_answer():
    files = _Files()
    req = _request(0, 21, bytes((6, 0, FILE_IMAGE, 0, 0, 0, 1, 1, 2)))
    assert respond(req, _Bank(files), bytearray(256)) == 0
    assert files.written == [(FILE_IMAGE, 0, b"\x01\x02")]
