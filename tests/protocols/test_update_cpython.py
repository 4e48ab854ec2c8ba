"""pymodbus, an independent master, and our slave agree on functions 20/21; our HMAC is the standard one."""

from __future__ import annotations

import hashlib
import hmac

from pymodbus.pdu.file_message import (
    FileRecord,
    ReadFileRecordRequest,
    ReadFileRecordResponse,
    WriteFileRecordRequest,
    WriteFileRecordResponse,
)

from protocols.modbus.crc import crc16
from protocols.modbus.slave import SlaveFramer, respond
from protocols.update import hmac_sha256, mac


class _Files:
    def __init__(self) -> None:
        self.data: dict[int, bytes] = {}

    def read_record(self, file: int, record: int, count: int, values: list[int]) -> None:
        for i in range(count):
            values[i] = (file << 8) + record + i

    def write_record(self, file: int, record: int, data: memoryview) -> None:
        self.data[record] = bytes(data)


class _Bank:
    def __init__(self) -> None:
        self.files = _Files()


def _serve(unit: int, pdu: bytes, bank: _Bank) -> bytes:
    frame = bytes((unit,)) + pdu
    crc = crc16(frame)
    framer = SlaveFramer(unit)
    framer.feed(frame + bytes((crc & 0xFF, crc >> 8)))
    out = bytearray(256)
    n = respond(framer.next_request(), bank, out)
    assert crc16(out, 0, n) == 0
    return bytes(out[1 : n - 2])  # the answer's PDU


def test_pymodbus_write_file_record_is_taken_and_its_echo_decodes() -> None:
    bank = _Bank()
    chunk = bytes(range(240))
    request = WriteFileRecordRequest([FileRecord(file_number=1, record_number=42, record_data=chunk)])
    answer = _serve(3, bytes((request.function_code,)) + request.encode(), bank)
    assert bank.files.data == {42: chunk}
    response = WriteFileRecordResponse()
    response.decode(answer[1:])
    assert answer[0] == 21 and response.records[0].record_data == chunk


def test_pymodbus_read_file_record_decodes_our_answer() -> None:
    request = ReadFileRecordRequest([FileRecord(file_number=2, record_number=0, record_length=24)])
    answer = _serve(3, bytes((request.function_code,)) + request.encode(), _Bank())
    response = ReadFileRecordResponse()
    response.decode(answer[1:])
    words = response.records[0].record_data
    assert [int.from_bytes(words[i:i + 2], "big") for i in range(0, 24, 2)] == [512 + i for i in range(12)]


def test_hmac_is_the_standard_library_s() -> None:
    for key in (b"", b"k", b"x" * 64, b"y" * 65, bytes(range(200))):
        message = b"streetedge" * 7
        assert hmac_sha256(key, message) == hmac.new(key, message, hashlib.sha256).digest()
    digest = hashlib.sha256(b"image").digest()
    expected = hmac.new(b"key", b"streetedge update\0lamp\0" + (5).to_bytes(4, "big") + (30).to_bytes(2, "big")
                        + digest, hashlib.sha256).digest()
    assert mac(b"key", "lamp", 5, 30, digest) == expected
