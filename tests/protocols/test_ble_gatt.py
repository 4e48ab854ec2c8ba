# common-subset
"""protocols.ble_gatt on both interpreters: command and result frames, their refusals, the op bodies."""
from expect import raises

from protocols import ble_gatt, bthome, bthome_read
from protocols.ccm import AesCcm
from protocols.errors import AuthenticationError, DecodeError, ProtocolError

KEY = bytes(range(16))
ADDRESS = bytes([0xD0, 0x5E, 0, 0, 0, 7])


def _pair():
    return ble_gatt.Sealed(KEY, ADDRESS), ble_gatt.Sealed(KEY, ADDRESS)


def test_a_command_and_its_result_round_trip():
    gateway, node = _pair()
    frame = gateway.command(7, ble_gatt.OP_WRITE, ble_gatt.write_body(3, [900, 0xFFFF]))
    assert frame[0] == ble_gatt.VERSION and frame[1:5] == b"\x07\x00\x00\x00"
    counter, op, body = node.open_command(frame)
    assert (counter, op) == (7, ble_gatt.OP_WRITE)
    assert ble_gatt.parse_body(op, body) == (3, [900, 0xFFFF])
    result = node.result(counter, ble_gatt.STATUS_OK)
    assert gateway.open_result(result) == (7, ble_gatt.STATUS_OK, b"")


def test_forged_or_foreign_frames_are_refused():
    gateway, node = _pair()
    frame = gateway.command(1, ble_gatt.OP_ACK_ALARM)
    for i in range(len(frame)):
        bad = bytearray(frame)
        bad[i] ^= 0x20
        raises(DecodeError if i == 0 else AuthenticationError, node.open_command, bytes(bad))
    other = ble_gatt.Sealed(bytes(16), ADDRESS)
    raises(AuthenticationError, other.open_command, frame)
    elsewhere = ble_gatt.Sealed(KEY, bytes(6))
    raises(AuthenticationError, elsewhere.open_command, frame)


def test_a_result_is_not_a_command_nor_the_other_way_round():
    gateway, node = _pair()
    raises(AuthenticationError, node.open_command, node.result(1, 0))
    raises(AuthenticationError, gateway.open_result, gateway.command(1, ble_gatt.OP_ACK_ALARM))


def test_malformed_frames_and_bodies_are_refused_with_a_reason():
    gateway, node = _pair()
    raises(DecodeError, node.open_command, b"\x01\x00\x00\x00\x00\x00")
    raises(DecodeError, node.open_command, bytes(300))
    raises(DecodeError, gateway.command, 1 << 32, ble_gatt.OP_ACK_ALARM)
    raises(DecodeError, gateway.command, 1, ble_gatt.OP_WRITE, bytes(240))
    raises(DecodeError, ble_gatt.write_body, 0, [])
    raises(DecodeError, ble_gatt.write_body, 0, [70000])
    raises(DecodeError, ble_gatt.parse_body, ble_gatt.OP_WRITE, b"\x00\x00\x01")
    raises(DecodeError, ble_gatt.parse_body, ble_gatt.OP_READ, b"\x00\x00\x00")
    raises(DecodeError, ble_gatt.parse_body, ble_gatt.OP_ACK_ALARM, b"\x00")
    exc = raises(DecodeError, ble_gatt.parse_body, 9, b"")
    assert "unknown GATT op 9" in str(exc)
    assert ble_gatt.parse_body(ble_gatt.OP_READ, b"\x05\x00\x02") == (5, 2)
    assert ble_gatt.parse_body(ble_gatt.OP_ACK_ALARM, b"") == ()


def test_the_nonce_never_meets_an_advert_nonce():
    """Bytes 6-7 of a GATT nonce are 'GC'/'GR', an advert's are the BTHome UUID d2 fc."""
    gateway, _ = _pair()
    nonce = gateway._nonce_for(b"GC", 5)
    assert bytes(nonce[6:8]) == b"GC" and bytes(nonce[6:8]) != b"\xd2\xfc"


def test_file_record_parts_and_reads_fit_one_sealed_frame():
    gateway, node = _pair()
    chunk = bytes(range(240))
    first = ble_gatt.file_write_body(1, 300, 0, chunk[:ble_gatt.FILE_PART])
    last = ble_gatt.file_write_body(1, 300, 1, chunk[ble_gatt.FILE_PART:])
    for part, body in ((0, first), (1, last)):
        frame = gateway.command(9, ble_gatt.OP_FILE_WRITE, body)
        assert len(frame) <= ble_gatt.MAX_FRAME
        counter, op, opened = node.open_command(frame)
        assert counter == 9
        assert ble_gatt.parse_body(op, opened) == (1, 300, part, chunk[120 * part:120 * part + 120])
    small = ble_gatt.file_write_body(2, 0, 1, b"\x00\x01")  # a control record fits one part
    assert ble_gatt.parse_body(ble_gatt.OP_FILE_WRITE, small) == (2, 0, 1, b"\x00\x01")
    read = ble_gatt.file_read_body(2, 0, 12)
    assert ble_gatt.parse_body(ble_gatt.OP_FILE_READ, read) == (2, 0, 12)


def test_bad_file_record_bodies_are_refused_with_a_reason():
    raises(DecodeError, ble_gatt.file_write_body, 1, 0, 0, bytes(100))  # a first part is a whole half
    raises(DecodeError, ble_gatt.file_write_body, 1, 0, 1, bytes(121))
    raises(DecodeError, ble_gatt.file_write_body, 1, 0, 2, bytes(4))
    raises(DecodeError, ble_gatt.file_write_body, 1, 0, 1, b"")
    raises(DecodeError, ble_gatt.file_read_body, 2, 0, 0)
    raises(DecodeError, ble_gatt.parse_body, ble_gatt.OP_FILE_WRITE, b"\x01\x00\x00")
    raises(DecodeError, ble_gatt.parse_body, ble_gatt.OP_FILE_WRITE, b"\x01\x00\x00\x00" + bytes(119))
    raises(DecodeError, ble_gatt.parse_body, ble_gatt.OP_FILE_WRITE, b"\x01\x00\x00\x03\x00")
    raises(DecodeError, ble_gatt.parse_body, ble_gatt.OP_FILE_READ, b"\x02\x00\x00\x65")


def test_frames_and_adverts_can_share_one_ccm():
    """A node seals adverts and GATT frames with one AES-CCM (one key schedule in its RAM); the gateway's own
    instances open both, and a shared instance with another tag length is refused."""
    sealer = bthome.Sealer(KEY, ADDRESS)
    advert = sealer.seal(b"\x02\xca\x09", 7)
    node = ble_gatt.Sealed(sealer.ccm, ADDRESS)
    gateway = ble_gatt.Sealed(KEY, ADDRESS)
    assert gateway.open_result(node.result(9, ble_gatt.STATUS_OK, b"\x01\x02")) == (9, 0, b"\x01\x02")
    assert node.open_command(gateway.command(10, ble_gatt.OP_ACK_ALARM)) == (10, ble_gatt.OP_ACK_ALARM, b"")
    assert sealer.seal(b"\x02\xca\x09", 7) == advert  # the frames between left the advert's sealing as it was
    assert bthome_read.Opener(KEY, ADDRESS).open(advert)[2] == b"\x02\xca\x09"
    raises(ProtocolError, ble_gatt.Sealed, AesCcm(KEY, 8), ADDRESS)
