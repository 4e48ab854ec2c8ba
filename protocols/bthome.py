"""BTHome v2 service data (https://bthome.io/format/): the objects, their encryption, the advert structure.

A BTHome v2 advert carries service data for the 16-bit UUID 0xFCD2: one
device-information byte (bit 0: encrypted, bit 2: trigger-based, bits 5-7:
version 2), then objects, each an object id followed by a little-endian
value of the length that id fixes (the raw and text objects carry a length
byte first). Encrypted, the objects are AES-CCM ciphertext followed by the
32-bit counter (little-endian) and a 4-byte tag; the nonce is the node's
address (6 bytes, as written), the UUID (``d2 fc``), the information byte
and the counter.

Only the objects the nodes send, and those a reader meets often, are in
:data:`OBJECTS`; an unknown id ends the parse with a DecodeError (BTHome
gives no length for it, so nothing after it can be read). Values are raw
integers; ``value * 10 ** scale`` is the reading in the unit of the table
(SenML unit names).

The streetedge alarms map onto BTHome binary sensors: leak is ``moisture``
(0x20), burst and backflow are ``problem`` (0x26), tamper is ``tamper``
(0x2B), low battery ``battery_low`` (0x15). An advert sent at once for an
alarm is marked trigger-based (bit 2), as BTHome prescribes for events.
"""

from protocols.ccm import AesCcm
from protocols.errors import AuthenticationError, DecodeError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


SERVICE_UUID = const(0xFCD2)
INFO_ENCRYPTED = const(0x01)
INFO_TRIGGER = const(0x04)
INFO_V2 = const(0x40)
_VERSION_MASK = const(0xE0)
_AD_SERVICE_DATA_16 = const(0x16)
_AD_FLAGS = const(0x01)
_MIC = const(4)
_COUNTER = const(4)
_VARIABLE = const(-1)  # raw and text: a length byte, then that many bytes

# Object ids the nodes send.
PACKET_ID = const(0x00)
BATTERY = const(0x01)
TEMPERATURE = const(0x02)
HUMIDITY = const(0x03)
PRESSURE = const(0x04)
VOLTAGE = const(0x0C)
PM25 = const(0x0D)
PM10 = const(0x0E)
BATTERY_LOW = const(0x15)
MOISTURE = const(0x20)
PROBLEM = const(0x26)
TAMPER = const(0x2B)
HUMIDITY_8 = const(0x2E)
COUNT_32 = const(0x3E)
WATER = const(0x4F)
TEXT = const(0x53)
RAW = const(0x54)

# id, name, length in bytes, signed, decimal scale, SenML unit (None: dimensionless or binary)
OBJECTS = (
    (0x00, "packet_id", 1, False, 0, None),
    (0x01, "battery", 1, False, 0, "%"),
    (0x02, "temperature", 2, True, -2, "Cel"),
    (0x03, "humidity", 2, False, -2, "%RH"),
    (0x04, "pressure", 3, False, -2, "hPa"),
    (0x05, "illuminance", 3, False, -2, "lx"),
    (0x09, "count", 1, False, 0, None),
    (0x0A, "energy", 3, False, -3, "kWh"),
    (0x0B, "power", 3, False, -2, "W"),
    (0x0C, "voltage", 2, False, -3, "V"),
    (0x0D, "pm25", 2, False, 0, "ug/m3"),
    (0x0E, "pm10", 2, False, 0, "ug/m3"),
    (0x0F, "generic_boolean", 1, False, 0, None),
    (0x10, "power_on", 1, False, 0, None),
    (0x11, "opening", 1, False, 0, None),
    (0x12, "co2", 2, False, 0, "ppm"),
    (0x13, "tvoc", 2, False, 0, "ug/m3"),
    (0x14, "moisture_level", 2, False, -2, "%"),
    (0x15, "battery_low", 1, False, 0, None),
    (0x20, "moisture", 1, False, 0, None),
    (0x26, "problem", 1, False, 0, None),
    (0x2B, "tamper", 1, False, 0, None),
    (0x2E, "humidity_8", 1, False, 0, "%RH"),
    (0x3D, "count_16", 2, False, 0, None),
    (0x3E, "count_32", 4, False, 0, None),
    (0x43, "current", 2, False, -3, "A"),
    (0x4A, "voltage_01", 2, False, -1, "V"),
    (0x4F, "water", 4, False, -3, "l"),
    (0x53, "text", _VARIABLE, False, 0, None),
    (0x54, "raw", _VARIABLE, False, 0, None),
    (0xF0, "device_type_id", 2, False, 0, None),
    (0xF1, "firmware_version", 4, False, 0, None),
)


def spec(object_id):
    """The OBJECTS row of ``object_id``; DecodeError naming the id when BTHome's table here lacks it."""
    for row in OBJECTS:
        if row[0] == object_id:
            return row
    raise DecodeError("unknown BTHome object id 0x%02x" % object_id)


def pack_into(buf, pos, object_id, value):
    """Write one object at ``buf[pos]``; return the position after it. Values are raw integers (bytes for raw/text)."""
    row = spec(object_id)
    size = row[2]
    buf[pos] = object_id
    pos += 1
    if size == _VARIABLE:
        n = len(value)
        if n > 255:
            raise DecodeError("BTHome %s object of %d bytes: 255 at most" % (row[1], n))
        buf[pos] = n
        buf[pos + 1 : pos + 1 + n] = value
        return pos + 1 + n
    bits = 8 * size
    if row[3]:
        if value < -(1 << (bits - 1)) or value >= 1 << (bits - 1):
            raise DecodeError("BTHome %s value %d does not fit %d signed bytes" % (row[1], value, size))
        value &= (1 << bits) - 1
    elif value < 0 or value >> bits:
        raise DecodeError("BTHome %s value %d does not fit %d unsigned bytes" % (row[1], value, size))
    for i in range(size):
        buf[pos + i] = (value >> (8 * i)) & 0xFF
    return pos + size


def encode_objects(objects):
    """The object bytes of ``objects``, a sequence of (object id, raw value), in the order given."""
    size = 0
    for object_id, value in objects:
        length = spec(object_id)[2]
        size += 2 + len(value) if length == _VARIABLE else 1 + length
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
        if size == _VARIABLE:
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


def _address_bytes(address):
    """Six address bytes from bytes or the text form ``AA:BB:CC:DD:EE:FF``."""
    if isinstance(address, str):
        parts = address.split(":")
        if len(parts) != 6:
            raise DecodeError("BLE address %r: six colon-separated bytes expected" % address)
        try:
            return bytes([int(p, 16) for p in parts])
        except ValueError:
            raise DecodeError("BLE address %r is not hexadecimal" % address) from None
    if len(address) != 6:
        raise DecodeError("BLE address of %d bytes: 6 expected" % len(address))
    return bytes(address)


def nonce(address, info, counter):
    """The 13-byte AES-CCM nonce: address, UUID (little-endian), information byte, counter (little-endian)."""
    out = bytearray(13)
    out[0:6] = _address_bytes(address)
    out[6] = SERVICE_UUID & 0xFF
    out[7] = SERVICE_UUID >> 8
    out[8] = info
    for i in range(4):
        out[9 + i] = (counter >> (8 * i)) & 0xFF
    return bytes(out)


class Sealer:
    """Encrypts a node's object bytes into BTHome v2 service data (the node side; one per key and address).

    The caller owns the counter: it must never repeat for a key (the nodes
    persist it), and the receiver refuses a counter it has seen.
    """

    def __init__(self, key, address):
        self._ccm = AesCcm(key, _MIC)
        self._address = _address_bytes(address)
        self._nonce = bytearray(13)
        self._nonce[0:6] = self._address
        self._nonce[6] = SERVICE_UUID & 0xFF
        self._nonce[7] = SERVICE_UUID >> 8

    def seal_into(self, objects, counter, out, trigger=False):
        """Service data (information byte, ciphertext, counter, tag) for ``objects`` into ``out``; its length."""
        if counter < 0 or counter >> 32:
            raise DecodeError("BTHome counter %d does not fit 32 bits" % counter)
        info = INFO_V2 | INFO_ENCRYPTED | (INFO_TRIGGER if trigger else 0)
        nonce_buf = self._nonce
        nonce_buf[8] = info
        for i in range(4):
            nonce_buf[9 + i] = (counter >> (8 * i)) & 0xFF
        n = len(objects)
        out[0] = info
        body = memoryview(out)
        self._ccm.seal_into(nonce_buf, objects, body[1 : 1 + n + _MIC], b"")
        # The tag follows the counter on the air: move it behind.
        for i in range(_MIC):
            out[1 + n + _COUNTER + i] = out[1 + n + i]
        for i in range(4):
            out[1 + n + i] = nonce_buf[9 + i]
        return 1 + n + _COUNTER + _MIC

    def seal(self, objects, counter, trigger=False):
        """Service data for ``objects`` (object bytes) as new bytes."""
        out = bytearray(1 + len(objects) + _COUNTER + _MIC)
        self.seal_into(objects, counter, out, trigger)
        return bytes(out)


class Opener:
    """Decrypts BTHome v2 service data of one node (the receiver side; one per key and address)."""

    def __init__(self, key, address):
        self._ccm = AesCcm(key, _MIC)
        self._address = _address_bytes(address)

    def open(self, service_data):
        """(information byte, counter, object bytes) of encrypted service data.

        DecodeError when it is not encrypted BTHome v2 or is too short;
        AuthenticationError when the tag does not match (forged, corrupted,
        another key or address).
        """
        info, counter = check_header(service_data)
        if not info & INFO_ENCRYPTED:
            raise DecodeError("BTHome service data not encrypted (information byte 0x%02x)" % info)
        n = len(service_data) - 1 - _COUNTER - _MIC
        sealed = bytearray(n + _MIC)
        sealed[0:n] = service_data[1 : 1 + n]
        sealed[n:] = service_data[1 + n + _COUNTER :]
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
    if len(service_data) < 1 + _COUNTER + _MIC:
        raise DecodeError("encrypted BTHome service data of %d bytes: 9 at least" % len(service_data))
    at = len(service_data) - _COUNTER - _MIC
    counter = 0
    for i in range(4):
        counter |= service_data[at + i] << (8 * i)
    return info, counter


def advert(service_data, name=None):
    """Advertising data: flags (LE general discoverable, no BR/EDR), the BTHome service data, an optional name."""
    out = bytearray((2, _AD_FLAGS, 0x06, len(service_data) + 3, _AD_SERVICE_DATA_16, SERVICE_UUID & 0xFF,
                     SERVICE_UUID >> 8))
    out += service_data
    if name:
        out += bytes((len(name) + 1, 0x09)) + name.encode()
    if len(out) > 31:
        raise DecodeError("advert of %d bytes: a legacy advert holds 31" % len(out))
    return bytes(out)


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


__all__ = ["OBJECTS", "SERVICE_UUID", "AuthenticationError", "Opener", "Sealer", "advert", "check_header",
           "decode_objects", "encode_objects", "nonce", "pack_into", "service_data_of", "spec"]
