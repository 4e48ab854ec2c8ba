"""The node's half of the GATT frames (:mod:`protocols.ble_gatt`): opens commands, seals results, reads bodies.

The frames, ops and bodies are described in :mod:`protocols.ble_gatt`, which
is this module plus the central's (gateway's) half: sealing commands, opening
results, building bodies. A node imports this one only: its RAM holds no
function it never calls (about 0.5 KB and a few names on the 64-bit unix
port).

Sans-IO: bytes in, values out; the radio is the caller's.
"""

from protocols.ccm import shared
from protocols.errors import DecodeError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


VERSION = const(1)
OP_WRITE = const(1)
OP_ACK_ALARM = const(2)
OP_READ = const(3)
OP_RADIO = const(4)
OP_FILE_WRITE = const(5)
OP_FILE_READ = const(6)
FILE_PART = const(120)  # bytes of a file record in one frame: half a 240-byte update chunk
TX_POWERS = (-12, -9, -6, -3, 0, 3, 6, 9)
"""TX power levels (dBm) a node may be set to: the ESP32 controller's BLE levels."""
INTERVAL_MIN_MS = const(20)
INTERVAL_MAX_MS = const(60000)  # a reading a minute (the radio repeats it at most every 10.24 s meanwhile)
STATUS_OK = const(0)
STATUS_REPLAY = const(0x80)
STATUS_BAD_OP = const(0x81)
NONCE_COMMAND = b"GC"  # bytes 6-7 of a command's nonce
NONCE_RESULT = b"GR"  # and of a result's
_TAG = const(4)
_HEADER = const(5)
MAX_FRAME = const(244)  # one write within the largest ATT MTU (247) less its 3-byte header
# 128-bit UUIDs of the service and its two characteristics (random, streetedge's own)
SERVICE_UUID = "5e7ee0d9-6b1a-4c2b-9f27-3a1d0b7c0000"
COMMAND_UUID = "5e7ee0d9-6b1a-4c2b-9f27-3a1d0b7c0001"
RESULT_UUID = "5e7ee0d9-6b1a-4c2b-9f27-3a1d0b7c0002"
# The errors' texts, numbered (_error): one string constant, where each text on its own would be an object in
# a node's RAM even with the module in ROM.
_TEXTS = const(
    "BLE address of %d bytes: 6 expected\n"  # 0
    "GATT counter %d does not fit 32 bits\n"  # 1
    "GATT frame of %d bytes: %d at most\n"  # 2
    "GATT frame of %d bytes: %d at least\n"  # 3
    "GATT frame version %d: %d expected\n"  # 4
    "interval_ms %d outside %d..%d\n"  # 5
    "tx_power_dbm %d is not one of %s\n"  # 6
    "sleep must be 0 or 1, not %r\n"  # 7
    "radio settings of %d bytes: 4 expected\n"  # 8
    "GATT write body of %d bytes: address and 1..100 words expected\n"  # 9
    "a GATT write carries 1 to 100 registers, not %d\n"  # 10
    "GATT read body: address (2) and a count 1..100 expected\n"  # 11
    "GATT file write body of %d bytes: file, record, part and 1..%d bytes expected\n"  # 12
    "GATT file read body: file (1), record (2) and a count 1..100 expected\n"  # 13
    "GATT alarm acknowledgement carries no body (%d bytes)\n"  # 14
    "unknown GATT op %d"  # 15
)


def _text(number, args=()):
    """Text ``number`` of _TEXTS formatted with ``args``."""
    return _TEXTS.split("\n")[number] % args


class Sealed:
    """The frames of one node (its key and address), the node's side: commands opened, results sealed.

    ``key``: the 16-byte key, or the node's :class:`~protocols.ccm.AesCcm` (4-byte tag) to share with its
    adverts (``bthome.Sealer.ccm``).
    """

    def __init__(self, key, address):
        if len(address) != 6:
            raise DecodeError(_text(0, len(address)))
        self._ccm = shared(key, _TAG)
        self._nonce = bytearray(13)
        self._nonce[0:6] = address

    def _nonce_for(self, kind, counter):
        nonce = self._nonce
        nonce[6:8] = kind
        nonce[8] = VERSION
        for i in range(4):
            nonce[9 + i] = (counter >> (8 * i)) & 0xFF
        return nonce

    def _seal(self, kind, counter, first, body):
        if counter < 0 or counter >> 32:
            raise DecodeError(_text(1, counter))
        plain = bytearray(1 + len(body))
        plain[0] = first
        plain[1:] = body
        if _HEADER + len(plain) + _TAG > MAX_FRAME:
            raise DecodeError(_text(2, (_HEADER + len(plain) + _TAG, MAX_FRAME)))
        out = bytearray(_HEADER + len(plain) + _TAG)
        out[0] = VERSION
        for i in range(4):
            out[1 + i] = (counter >> (8 * i)) & 0xFF
        self._ccm.seal_into(self._nonce_for(kind, counter), plain, memoryview(out)[_HEADER:])
        return bytes(out)

    def _open(self, kind, frame):
        n = len(frame)
        if n < _HEADER + 1 + _TAG:
            raise DecodeError(_text(3, (n, _HEADER + 1 + _TAG)))
        if n > MAX_FRAME:
            raise DecodeError(_text(2, (n, MAX_FRAME)))
        if frame[0] != VERSION:
            raise DecodeError(_text(4, (frame[0], VERSION)))
        counter = frame[1] | frame[2] << 8 | frame[3] << 16 | frame[4] << 24
        plain = self._ccm.decrypt(self._nonce_for(kind, counter), memoryview(frame)[_HEADER:])
        return counter, plain[0], plain[1:]

    def open_command(self, frame):
        """(counter, op, body) of a command frame; AuthenticationError if forged, DecodeError if malformed."""
        return self._open(NONCE_COMMAND, frame)

    def result(self, counter, status, body=b""):
        """A result frame answering the command with ``counter`` (the node's side)."""
        return self._seal(NONCE_RESULT, counter, status, body)


def radio_body(interval_ms, tx_power_dbm, sleep):
    """The 4 bytes of radio settings: advert interval (ms, 2), TX power (dBm, signed, 1), sleep (1).

    The body of an :data:`OP_RADIO` that sets them, and of its result. DecodeError naming a value out of range.
    """
    problem = radio_problem(interval_ms, tx_power_dbm, sleep)
    if problem:
        raise DecodeError(problem)
    return bytes((interval_ms & 0xFF, interval_ms >> 8, tx_power_dbm & 0xFF, 1 if sleep else 0))


def radio_problem(interval_ms, tx_power_dbm, sleep):
    """Why these radio settings cannot be taken (a sentence), or None."""
    if not INTERVAL_MIN_MS <= interval_ms <= INTERVAL_MAX_MS:
        return _text(5, (interval_ms, INTERVAL_MIN_MS, INTERVAL_MAX_MS))
    if tx_power_dbm not in TX_POWERS:
        return _text(6, (tx_power_dbm, TX_POWERS))
    if sleep not in (0, 1, False, True):
        return _text(7, (sleep,))
    return None


def parse_radio(body):
    """(interval_ms, tx_power_dbm, sleep) of 4 bytes of radio settings (not range-checked)."""
    if len(body) != 4:
        raise DecodeError(_text(8, len(body)))
    tx = body[2] - 256 if body[2] > 127 else body[2]
    return body[0] | body[1] << 8, tx, body[3]


def parse_body(op, body):
    """What a command asks for: (address, words) for a write, (address, count) for a read, () for an ack or
    a radio read, (interval_ms, tx_power_dbm, sleep) for radio settings, (file, record, part, data) for a
    file record part, (file, record, count) for a file read.

    DecodeError naming the problem for an unknown op or a body of the wrong shape.
    """
    n = len(body)
    if op == OP_WRITE:
        if n < 4 or n % 2:
            raise DecodeError(_text(9, n))
        words = [body[i] | body[i + 1] << 8 for i in range(2, n, 2)]
        if len(words) > 100:
            raise DecodeError(_text(10, len(words)))
        return body[0] | body[1] << 8, words
    if op == OP_READ:
        if n != 3 or not 1 <= body[2] <= 100:
            raise DecodeError(_text(11))
        return body[0] | body[1] << 8, body[2]
    if op == OP_RADIO:
        return parse_radio(body) if n else ()
    if op == OP_FILE_WRITE:
        if n < 5 or n > 4 + FILE_PART or body[3] > 1 or (body[3] == 0 and n != 4 + FILE_PART):
            raise DecodeError(_text(12, (n, FILE_PART)))
        return body[0], body[1] | body[2] << 8, body[3], body[4:]
    if op == OP_FILE_READ:
        if n != 4 or not 1 <= body[3] <= 100:
            raise DecodeError(_text(13))
        return body[0], body[1] | body[2] << 8, body[3]
    if op == OP_ACK_ALARM:
        if n:
            raise DecodeError(_text(14, n))
        return ()
    raise DecodeError(_text(15, op))
