# common-subset
from protocols.modbus.crc import _HI, _LO, crc16, crc_ok, put_crc

# (frame without CRC, CRC bytes as sent: low byte first). The first two are
# the examples of the Modbus over Serial Line guide; the rest were checked
# against pymodbus 3.16 (FramerRTU.compute_CRC).
GOLDEN = (
    ("01030000000a", "c5cd"),
    ("1103006b0003", "7687"),
    ("010600010003", "980b"),
    ("11100001000204000a0102", "c6f0"),
    ("018302", "c0f1"),
    ("011000010002", "1008"),
    ("00060010ffff", "886e"),
    ("050300000002", "c58f"),
)


def _bitwise(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _wire(crc):
    return bytes((crc & 0xFF, crc >> 8))


def test_golden_frames():
    for body, crc in GOLDEN:
        assert _wire(crc16(bytes.fromhex(body))) == bytes.fromhex(crc), body


def test_catalogue_check_value():
    # CRC-16/MODBUS check value from the CRC catalogue.
    assert crc16(b"123456789") == 0x4B37


def test_empty_input_is_the_initial_value():
    assert crc16(b"") == 0xFFFF
    assert crc16(b"abc", 1, 1) == 0xFFFF


def test_start_and_end_select_a_slice_without_copying():
    data = b"\xaa\xbb" + bytes.fromhex("01030000000a") + b"\xcc"
    assert crc16(data, 2, 8) == 0xCDC5
    assert crc16(data[2:], 0, 6) == 0xCDC5
    assert crc16(data[2:8]) == crc16(data[2:8], 0, -1)


def test_accepts_bytes_bytearray_and_memoryview():
    body = bytes.fromhex("1103006b0003")
    assert crc16(body) == crc16(bytearray(body)) == crc16(memoryview(body)) == 0x8776
    assert crc16(memoryview(b"xx" + body)[2:]) == 0x8776


def test_tables_are_bytes_and_match_the_bitwise_definition():
    assert isinstance(_LO, bytes) and isinstance(_HI, bytes)
    assert len(_LO) == 256 and len(_HI) == 256
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
        assert _LO[i] == c & 0xFF and _HI[i] == c >> 8, i


def test_table_driven_equals_bitwise_on_many_inputs():
    seed = 12345
    for n in range(0, 300, 7):
        data = bytearray(n)
        for i in range(n):
            seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
            data[i] = seed >> 16 & 0xFF
        assert crc16(data) == _bitwise(data), n


def test_put_crc_appends_low_byte_first_and_crc_ok_accepts_it():
    out = bytearray(16)
    body = bytes.fromhex("01030000000a")
    out[0:6] = body
    assert put_crc(out, 6) == 8
    assert bytes(out[:8]) == bytes.fromhex("01030000000ac5cd")
    assert crc_ok(out, 0, 8)
    out[7] ^= 1
    assert not crc_ok(out, 0, 8)


def test_crc_ok_at_an_offset():
    buf = b"\x00\x00" + bytes.fromhex("01030000000ac5cd") + b"\xff"
    assert crc_ok(buf, 2, 8)
    assert not crc_ok(buf, 1, 8)


def test_every_single_bit_error_is_detected():
    frame = bytearray(bytes.fromhex("11100001000204000a0102c6f0"))
    for byte in range(len(frame)):
        for bit in range(8):
            frame[byte] ^= 1 << bit
            assert not crc_ok(frame, 0, len(frame)), (byte, bit)
            frame[byte] ^= 1 << bit
    assert crc_ok(frame, 0, len(frame))
