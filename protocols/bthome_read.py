"""BTHome v2 service data, the receiving side: object names, scales and units, the parser, decryption.

The gateway, the tests and Home Assistant's view of the nodes read adverts
with this module; a node only sends (:mod:`protocols.bthome`). Only the
objects the nodes send, and those a reader meets often, are known; an
unknown id ends the parse with a DecodeError (BTHome gives no length for
it, so nothing after it can be read). Values are raw integers;
``value * 10 ** scale`` is the reading in the unit of :data:`OBJECTS`
(SenML unit names).
"""

from protocols.bthome import (
    COUNTER,
    INFO_ENCRYPTED,
    INFO_TRIGGER,
    INFO_V2,
    MIC,
    SERVICE_UUID,
    SIGNED,
    VARIABLE,
    WATER,
    address_bytes,
    pack_into,
    size_of,
)
from protocols.ccm import AesCcm
from protocols.errors import DecodeError

_VERSION_MASK = 0xE0
_AD_SERVICE_DATA_16 = 0x16
__all__ = ["INFO_TRIGGER", "OBJECTS", "WATER", "Opener", "check_header", "decode_objects", "encode_objects",
           "nonce", "service_data_of", "spec"]

# id, name, decimal scale, SenML unit (None: dimensionless or binary); lengths are protocols.bthome.SIZES
OBJECTS = (
    (0x00, "packet_id", 0, None),
    (0x01, "battery", 0, "%"),
    (0x02, "temperature", -2, "Cel"),
    (0x03, "humidity", -2, "%RH"),
    (0x04, "pressure", -2, "hPa"),
    (0x05, "illuminance", -2, "lx"),
    (0x09, "count", 0, None),
    (0x0A, "energy", -3, "kWh"),
    (0x0B, "power", -2, "W"),
    (0x0C, "voltage", -3, "V"),
    (0x0D, "pm25", 0, "ug/m3"),
    (0x0E, "pm10", 0, "ug/m3"),
    (0x0F, "generic_boolean", 0, None),
    (0x10, "power_on", 0, None),
    (0x11, "opening", 0, None),
    (0x12, "co2", 0, "ppm"),
    (0x13, "tvoc", 0, "ug/m3"),
    (0x14, "moisture_level", -2, "%"),
    (0x15, "battery_low", 0, None),
    (0x20, "moisture", 0, None),
    (0x26, "problem", 0, None),
    (0x2B, "tamper", 0, None),
    (0x2E, "humidity_8", 0, "%RH"),
    (0x3D, "count_16", 0, None),
    (0x3E, "count_32", 0, None),
    (0x43, "current", -3, "A"),
    (0x4A, "voltage_01", -1, "V"),
    (0x4F, "water", -3, "l"),
    (0x53, "text", 0, None),
    (0x54, "raw", 0, None),
    (0xF0, "device_type_id", 0, None),
    (0xF1, "firmware_version", 0, None),
)


def spec(object_id):
    """(id, name, length or -1 for raw/text, signed, scale, unit) of ``object_id``; DecodeError when unknown."""
    code = size_of(object_id)
    for row in OBJECTS:
        if row[0] == object_id:
            size = -1 if code == VARIABLE else code & 0x7F
            return (object_id, row[1], size, bool(code & SIGNED and code != VARIABLE), row[2], row[3])
    raise DecodeError("BTHome object id 0x%02x has no name here" % object_id)


def encode_objects(objects):
    """The object bytes of ``objects``, a sequence of (object id, raw value), in the order given."""
    size = 0
    for object_id, value in objects:
        code = size_of(object_id)
        size += 2 + len(value) if code == VARIABLE else 1 + (code & 0x7F)
    buf = bytearray(size)
    pos = 0
    for object_id, value in objects:
        pos = pack_into(buf, pos, object_id, value)
    return bytes(buf)


def decode_objects(data):
    """The (object id, raw value) pairs of object bytes; DecodeError on an unknown id or a truncated value."""
    out = []  # type: list[tuple[int, int | bytes]]
    pos = 0
    n = len(data)
    while pos < n:
        object_id = data[pos]
        row = spec(object_id)
        size = row[2]
        pos += 1
        if size < 0:
            if pos >= n:
                raise DecodeError("BTHome %s object without its length byte" % row[1])
            size = data[pos]
            pos += 1
            if pos + size > n:
                raise DecodeError("BTHome %s object of %d bytes truncated at %d" % (row[1], size, n - pos))
            out.append((object_id, bytes(data[pos : pos + size])))
            pos += size
            continue
        if pos + size > n:
            raise DecodeError("BTHome %s object truncated: %d of %d bytes" % (row[1], n - pos, size))
        value = 0
        for i in range(size):
            value |= data[pos + i] << (8 * i)
        if row[3] and value >> (8 * size - 1):
            value -= 1 << (8 * size)
        out.append((object_id, value))
        pos += size
    return out


def nonce(address, info, counter):
    """The 13-byte AES-CCM nonce: address, UUID (little-endian), information byte, counter (little-endian)."""
    out = bytearray(13)
    out[0:6] = address_bytes(address)
    out[6] = SERVICE_UUID & 0xFF
    out[7] = SERVICE_UUID >> 8
    out[8] = info
    for i in range(4):
        out[9 + i] = (counter >> (8 * i)) & 0xFF
    return bytes(out)


class Opener:
    """Decrypts BTHome v2 service data of one node (the receiver side; one per key and address)."""

    def __init__(self, key, address):
        self._ccm = AesCcm(key, MIC)
        self._address = address_bytes(address)

    def open(self, service_data):
        """(information byte, counter, object bytes) of encrypted service data.

        DecodeError when it is not encrypted BTHome v2 or is too short;
        AuthenticationError when the tag does not match (forged, corrupted,
        another key or address).
        """
        info, counter = check_header(service_data)
        if not info & INFO_ENCRYPTED:
            raise DecodeError("BTHome service data not encrypted (information byte 0x%02x)" % info)
        n = len(service_data) - 1 - COUNTER - MIC
        sealed = bytearray(n + MIC)
        sealed[0:n] = service_data[1 : 1 + n]
        sealed[n:] = service_data[1 + n + COUNTER :]
        plain = self._ccm.decrypt(nonce(self._address, info, counter), sealed)
        return info, counter, plain


def check_header(service_data):
    """(information byte, counter or None) of service data; DecodeError unless it is BTHome v2 that fits."""
    if not service_data:
        raise DecodeError("empty BTHome service data")
    info = service_data[0]
    if info & _VERSION_MASK != INFO_V2:
        raise DecodeError("BTHome version %d: only version 2 is read" % (info >> 5))
    if not info & INFO_ENCRYPTED:
        return info, None
    if len(service_data) < 1 + COUNTER + MIC:
        raise DecodeError("encrypted BTHome service data of %d bytes: 9 at least" % len(service_data))
    at = len(service_data) - COUNTER - MIC
    counter = 0
    for i in range(4):
        counter |= service_data[at + i] << (8 * i)
    return info, counter


def service_data_of(adv_data):
    """The BTHome service data (after the UUID) in advertising data, or None; DecodeError on a malformed structure."""
    pos = 0
    n = len(adv_data)
    found = None
    while pos < n:
        length = adv_data[pos]
        if length == 0:
            break  # the rest is padding
        if pos + 1 + length > n:
            raise DecodeError("advert structure of %d bytes at %d runs past the end (%d)" % (length, pos, n))
        kind = adv_data[pos + 1]
        if kind == _AD_SERVICE_DATA_16 and length >= 3:
            uuid = adv_data[pos + 2] | (adv_data[pos + 3] << 8)
            if uuid == SERVICE_UUID:
                found = bytes(adv_data[pos + 4 : pos + 1 + length])
        pos += 1 + length
    return found
