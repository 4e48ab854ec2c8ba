"""The GATT command and result frames of a BLE node: authenticated with the node's key, never replayed.

A gateway writes a command frame to the node's command characteristic; the
node answers with a result frame as a notification. No BLE bonding is
relied on: each frame is sealed with AES-CCM under the node's key (the same
key as its adverts; the nonce differs in its bytes 6-7, so no nonce is ever
shared with an advert)::

    frame = version (1) | counter (4, little-endian) | ciphertext | tag (4)
    nonce = node address (6) | "G" "C" (command) or "G" "R" (result) | version | counter
    plaintext of a command = op (1) | body;  of a result = status (1) | body

The counter of a command is the gateway's, above every command counter the
node accepted before (the node keeps the highest); a result carries the
counter of the command it answers. Ops: :data:`OP_WRITE` (holding
registers: address (2, little-endian), then 16-bit words, as a Modbus write
of several registers), :data:`OP_ACK_ALARM` (stop repeating the alarm
adverts), :data:`OP_READ` (address (2), count (1)), :data:`OP_RADIO` (the
radio settings: empty to read them, :func:`radio_body` to set them; the
result carries them as they are now), and the node's file
records, the same as Modbus functions 20/21 carry (updates:
:mod:`protocols.update`): :data:`OP_FILE_WRITE` (file (1), record (2), part
(1), data: a record of up to 240 bytes does not fit one frame, so it goes in
two parts of at most :data:`FILE_PART` bytes, part 0 then the last, part 1; a
record that fits goes as part 1 alone) and :data:`OP_FILE_READ` (file (1),
record (2), count (1): that many words, little-endian, in the result's
body). Result status: 0 done,
else the Modbus exception code the node's register bank gives (2: address,
3: value, 4: device failure), or :data:`STATUS_REPLAY` / :data:`STATUS_BAD_OP`.

The node's half (opening commands, sealing results, reading bodies) is
:mod:`protocols.ble_gatt_server`, which a node imports alone; this module
gives all of it (the names below are the same objects) plus the central's
half, for the gateway and the tools.

Sans-IO: bytes in, values out; the radio is the caller's.
"""

from protocols import ble_gatt_server as _server
from protocols.ble_gatt_server import (
    COMMAND_UUID,
    FILE_PART,
    INTERVAL_MAX_MS,
    INTERVAL_MIN_MS,
    MAX_FRAME,
    OP_ACK_ALARM,
    OP_FILE_READ,
    OP_FILE_WRITE,
    OP_RADIO,
    OP_READ,
    OP_WRITE,
    RESULT_UUID,
    SERVICE_UUID,
    STATUS_BAD_OP,
    STATUS_OK,
    STATUS_REPLAY,
    TX_POWERS,
    VERSION,
    parse_body,
    parse_radio,
    radio_body,
    radio_problem,
)
from protocols.errors import DecodeError

__all__ = [
    "COMMAND_UUID", "FILE_PART", "INTERVAL_MAX_MS", "INTERVAL_MIN_MS", "MAX_FRAME", "OPS", "OP_ACK_ALARM",
    "OP_FILE_READ", "OP_FILE_WRITE", "OP_RADIO", "OP_READ", "OP_WRITE", "RESULT_UUID", "SERVICE_UUID",
    "STATUS_BAD_OP", "STATUS_OK", "STATUS_REPLAY", "TX_POWERS", "VERSION", "Sealed", "file_read_body",
    "file_write_body", "parse_body", "parse_radio", "radio_body", "radio_problem", "write_body",
]

OPS = (OP_WRITE, OP_ACK_ALARM, OP_READ, OP_RADIO, OP_FILE_WRITE, OP_FILE_READ)


class Sealed(_server.Sealed):
    """The frames of one node (its key and address), both directions: the central's side added."""

    def command(self, counter, op, body=b""):
        """A command frame (the gateway's side)."""
        return self._seal(_server.NONCE_COMMAND, counter, op, body)

    def open_result(self, frame):
        """(counter, status, body) of a result frame; AuthenticationError if forged, DecodeError if malformed."""
        return self._open(_server.NONCE_RESULT, frame)


def write_body(address, words):
    """The body of an :data:`OP_WRITE`: holding registers from ``address`` on."""
    if not words or len(words) > 100:
        raise DecodeError("a GATT write carries 1 to 100 registers, not %d" % len(words))
    out = bytearray(2 + 2 * len(words))
    out[0] = address & 0xFF
    out[1] = address >> 8
    for i, word in enumerate(words):
        if word < 0 or word > 0xFFFF:
            raise DecodeError("register word %d out of 0..65535" % word)
        out[2 + 2 * i] = word & 0xFF
        out[3 + 2 * i] = word >> 8
    return bytes(out)


def file_write_body(file, record, part, data):
    """The body of an :data:`OP_FILE_WRITE`: part ``part`` (0: more follows, 1: the last) of a file record."""
    if part not in (0, 1) or not data or len(data) > FILE_PART or (part == 0 and len(data) != FILE_PART):
        raise DecodeError("a GATT file record part carries 1..%d bytes (part 0: %d), not %d in part %d"
                          % (FILE_PART, FILE_PART, len(data), part))
    return bytes((file, record & 0xFF, record >> 8, part)) + bytes(data)


def file_read_body(file, record, count):
    """The body of an :data:`OP_FILE_READ`: ``count`` words of a file record."""
    if not 1 <= count <= 100:
        raise DecodeError("a GATT file read asks 1 to 100 words, not %d" % count)
    return bytes((file, record & 0xFF, record >> 8, count))
