# common-subset
"""The BLE protocol modules' refusals on both interpreters: every text whole, as the gateway and a node read it.

The texts are kept numbered in one string per module (RAM on a node); each
refusal below is checked word for word, so no number points at another text.
"""
from expect import raises

from protocols import ble_gatt, bthome
from protocols.ccm import AesCcm, shared
from protocols.errors import AuthenticationError, DecodeError, ProtocolError

KEY = bytes(range(16))
ADDRESS = bytes([0xD0, 0x5E, 0, 0, 0, 7])
NONCE = bytes(13)


class _Sized:
    """Associated data of a length only (the refusal reads no byte): 65 KB would not fit a node's heap."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n


def _text(exc_type, fn, *args):
    return str(raises(exc_type, fn, *args))


def test_gatt_frame_refusals():
    gateway = ble_gatt.Sealed(KEY, ADDRESS)
    assert _text(DecodeError, ble_gatt.Sealed, KEY, bytes(5)) == "BLE address of 5 bytes: 6 expected"
    assert _text(DecodeError, gateway.command, 1 << 32, ble_gatt.OP_ACK_ALARM) == (
        "GATT counter 4294967296 does not fit 32 bits")
    assert _text(DecodeError, gateway.command, 1, ble_gatt.OP_WRITE, bytes(240)) == (
        "GATT frame of 250 bytes: 244 at most")
    assert _text(DecodeError, gateway.open_command, b"\x01" + bytes(5)) == "GATT frame of 6 bytes: 10 at least"
    assert _text(DecodeError, gateway.open_command, bytes(300)) == "GATT frame of 300 bytes: 244 at most"
    assert _text(DecodeError, gateway.open_command, b"\x02" + bytes(10)) == "GATT frame version 2: 1 expected"


def test_gatt_radio_settings_refusals():
    assert ble_gatt.radio_problem(10, 0, 0) == "interval_ms 10 outside 20..60000"
    assert ble_gatt.radio_problem(1000, 5, 0) == "tx_power_dbm 5 is not one of (-12, -9, -6, -3, 0, 3, 6, 9)"
    assert ble_gatt.radio_problem(1000, 0, 2) == "sleep must be 0 or 1, not 2"
    assert ble_gatt.radio_problem(1000, 0, 1) is None
    assert _text(DecodeError, ble_gatt.radio_body, 70000, 0, 0) == "interval_ms 70000 outside 20..60000"
    assert _text(DecodeError, ble_gatt.parse_radio, b"\x00") == "radio settings of 1 bytes: 4 expected"


def test_gatt_body_refusals():
    parse = ble_gatt.parse_body
    assert _text(DecodeError, parse, ble_gatt.OP_WRITE, b"\x00\x00\x01") == (
        "GATT write body of 3 bytes: address and 1..100 words expected")
    assert _text(DecodeError, parse, ble_gatt.OP_WRITE, bytes(204)) == (
        "a GATT write carries 1 to 100 registers, not 101")
    assert _text(DecodeError, parse, ble_gatt.OP_READ, b"\x00\x00\x00") == (
        "GATT read body: address (2) and a count 1..100 expected")
    assert _text(DecodeError, parse, ble_gatt.OP_FILE_WRITE, b"\x00") == (
        "GATT file write body of 1 bytes: file, record, part and 1..120 bytes expected")
    assert _text(DecodeError, parse, ble_gatt.OP_FILE_READ, b"") == (
        "GATT file read body: file (1), record (2) and a count 1..100 expected")
    assert _text(DecodeError, parse, ble_gatt.OP_ACK_ALARM, b"\x00") == (
        "GATT alarm acknowledgement carries no body (1 bytes)")
    assert _text(DecodeError, parse, 9, b"") == "unknown GATT op 9"


def test_bthome_refusals():
    buf = bytearray(300)
    assert _text(DecodeError, bthome.size_of, 0xFE) == "unknown BTHome object id 0xfe"
    assert _text(DecodeError, bthome.pack_into, buf, 0, bthome.TEXT, bytes(256)) == (
        "BTHome object 0x53 of 256 bytes: 255 at most")
    assert _text(DecodeError, bthome.pack_into, buf, 0, bthome.TEMPERATURE, 40000) == (
        "BTHome object 0x02: 40000 does not fit 2 signed bytes")
    assert _text(DecodeError, bthome.pack_into, buf, 0, bthome.BATTERY, 256) == (
        "BTHome object 0x01: 256 does not fit 1 unsigned bytes")
    assert _text(DecodeError, bthome.address_bytes, "AA:BB") == (
        "BLE address 'AA:BB': six colon-separated bytes expected")
    assert _text(DecodeError, bthome.address_bytes, "GG:00:00:00:00:00") == (
        "BLE address 'GG:00:00:00:00:00' is not hexadecimal")
    assert _text(DecodeError, bthome.address_bytes, b"\x00") == "BLE address of 1 bytes: 6 expected"
    assert _text(DecodeError, bthome.Sealer(KEY, ADDRESS).seal, b"", -1) == "BTHome counter -1 does not fit 32 bits"
    assert _text(DecodeError, bthome.advert, bytes(30)) == "advert of 37 bytes: a legacy advert holds 31"


def test_ccm_refusals():
    ccm = AesCcm(KEY, 4)
    assert _text(ProtocolError, AesCcm, bytes(15)) == "AES key of 15 bytes: 16 or 32 expected"
    assert _text(ProtocolError, AesCcm, KEY, 5) == "CCM tag of 5 bytes: an even length from 4 to 16 expected"
    assert _text(AuthenticationError, ccm.decrypt, NONCE, b"\x00") == "sealed data of 1 bytes is shorter than the tag"
    assert _text(AuthenticationError, ccm.open_into, NONCE, bytes(3), bytearray(4)) == (
        "sealed data of 3 bytes is shorter than the tag")
    assert _text(ProtocolError, ccm.seal_into, NONCE, b"abc", bytearray(2)) == "output buffer of 2 bytes, 7 needed"
    assert _text(ProtocolError, ccm.open_into, NONCE, bytes(8), bytearray(2)) == "output buffer of 2 bytes, 4 needed"
    assert _text(AuthenticationError, ccm.decrypt, NONCE, bytes(8)) == "CCM tag mismatch"
    assert _text(ProtocolError, ccm.encrypt, bytes(6), b"x") == "CCM nonce of 6 bytes: 7 to 13 expected"
    assert _text(ProtocolError, ccm.encrypt, NONCE, b"", _Sized(0xFF00)) == (
        "associated data of 65280 bytes: under 65280 supported")
    # 7 nonce bytes leave an 8-byte length field: no message is too long; a 13-byte nonce's field holds 65535
    assert _text(ProtocolError, shared, ccm, 8) == "a shared AES-CCM with a 4-byte tag: 8 expected"
