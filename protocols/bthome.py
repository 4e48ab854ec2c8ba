"""BTHome v2 service data (https://bthome.io/format/), the sending side: objects, encryption, advert.

A BTHome v2 advert carries service data for the 16-bit UUID 0xFCD2: one
device-information byte (bit 0: encrypted, bit 2: trigger-based, bits 5-7:
version 2), then objects, each an object id followed by a little-endian
value of the length that id fixes (the raw and text objects carry a length
byte first). Encrypted, the objects are AES-CCM ciphertext followed by the
32-bit counter (little-endian) and a 4-byte tag; the nonce is the node's
address (6 bytes, as written), the UUID (``d2 fc``), the information byte
and the counter.

This module is what a node imports (kept small: it lives in the node's
heap), with what each battery role advertises (the tables
:mod:`protocols.ble_adverts` describes and re-exports, :func:`role`, the
packing of reading and alarm adverts); the receiving side (names, scales and units of the objects, the
parser, decryption) is :mod:`protocols.bthome_read`. :data:`SIZES` gives the
length of every object id known here: pairs of bytes (id, length), the
length's bit 7 set for a signed value, 0xFF for the raw and text objects.

The streetedge alarms map onto BTHome binary sensors: leak is ``moisture``
(0x20), burst and backflow are ``problem`` (0x26), tamper is ``tamper``
(0x2B), low battery ``battery_low`` (0x15). An advert sent at once for an
alarm is marked trigger-based (bit 2), as BTHome prescribes for events.
"""

from protocols.ccm import shared
from protocols.errors import DecodeError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


SERVICE_UUID = const(0xFCD2)
INFO_ENCRYPTED = const(0x01)
INFO_TRIGGER = const(0x04)
INFO_V2 = const(0x40)
MIC = const(4)
COUNTER = const(4)
SIGNED = const(0x80)
VARIABLE = const(0xFF)  # raw and text: a length byte, then that many bytes
_AD_SERVICE_DATA_16 = const(0x16)
_AD_FLAGS = const(0x01)
# The errors' texts, numbered (_text): one string constant, where each text on its own would be an object in a
# node's RAM even with the module in ROM.
_TEXTS = const(
    "unknown BTHome object id 0x%02x\n"  # 0
    "BTHome object 0x%02x of %d bytes: 255 at most\n"  # 1
    "BTHome object 0x%02x: %d does not fit %d signed bytes\n"  # 2
    "BTHome object 0x%02x: %d does not fit %d unsigned bytes\n"  # 3
    "BLE address %r: six colon-separated bytes expected\n"  # 4
    "BLE address %r is not hexadecimal\n"  # 5
    "BLE address of %d bytes: 6 expected\n"  # 6
    "BTHome counter %d does not fit 32 bits\n"  # 7
    "advert of %d bytes: a legacy advert holds 31"  # 8
)


def _text(number, args=()):
    """Text ``number`` of _TEXTS formatted with ``args``."""
    return _TEXTS.split("\n")[number] % args

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

# (id, length) pairs, in id order; see the module's docstring.
SIZES = (
    b"\x00\x01\x01\x01\x02\x82\x03\x02\x04\x03\x05\x03\x09\x01\x0a\x03\x0b\x03\x0c\x02\x0d\x02\x0e\x02"
    b"\x0f\x01\x10\x01\x11\x01\x12\x02\x13\x02\x14\x02\x15\x01\x20\x01\x26\x01\x2b\x01\x2e\x01\x3d\x02"
    b"\x3e\x04\x43\x02\x4a\x02\x4f\x04\x53\xff\x54\xff\xf0\x02\xf1\x04"
)


def size_of(object_id):
    """Length code of ``object_id`` (see :data:`SIZES`); DecodeError naming the id when it is not known here."""
    for i in range(0, len(SIZES), 2):
        if SIZES[i] == object_id:
            return SIZES[i + 1]
    raise DecodeError(_text(0, object_id))


def pack_into(buf, pos, object_id, value):
    """Write one object at ``buf[pos]``; return the position after it. Values are raw integers (bytes for raw/text)."""
    code = size_of(object_id)
    buf[pos] = object_id
    pos += 1
    if code == VARIABLE:
        n = len(value)
        if n > 255:
            raise DecodeError(_text(1, (object_id, n)))
        buf[pos] = n
        buf[pos + 1 : pos + 1 + n] = value
        return pos + 1 + n
    size = code & 0x7F
    bits = 8 * size
    if code & SIGNED:
        if value < -(1 << (bits - 1)) or value >= 1 << (bits - 1):
            raise DecodeError(_text(2, (object_id, value, size)))
        value &= (1 << bits) - 1
    elif value < 0 or value >> bits:
        raise DecodeError(_text(3, (object_id, value, size)))
    for i in range(size):
        buf[pos + i] = (value >> (8 * i)) & 0xFF
    return pos + size


def address_bytes(address):
    """Six address bytes from bytes or the text form ``AA:BB:CC:DD:EE:FF``."""
    if isinstance(address, str):
        parts = address.split(":")
        if len(parts) != 6:
            raise DecodeError(_text(4, (address,)))
        try:
            return bytes([int(p, 16) for p in parts])
        except ValueError:
            raise DecodeError(_text(5, (address,))) from None
    if len(address) != 6:
        raise DecodeError(_text(6, len(address)))
    return bytes(address)


class Sealer:
    """Encrypts a node's object bytes into BTHome v2 service data (the node side; one per key and address).

    The caller owns the counter: it must never repeat for a key (the nodes
    persist it), and the receiver refuses a counter it has seen. ``key`` is
    the 16-byte key, or an :class:`~protocols.ccm.AesCcm` with a 4-byte tag
    to share (:attr:`ccm`: a node's GATT frames use the same key).
    """

    def __init__(self, key, address):
        self.ccm = shared(key, MIC)
        self._nonce = bytearray(13)  # address, UUID, information byte, counter
        self._nonce[0:6] = address_bytes(address)
        self._nonce[6] = SERVICE_UUID & 0xFF
        self._nonce[7] = SERVICE_UUID >> 8

    def seal_into(self, objects, counter, out, trigger=False):
        """Service data (information byte, ciphertext, counter, tag) for ``objects`` into ``out``; its length."""
        if counter < 0 or counter >> 32:
            raise DecodeError(_text(7, counter))
        info = INFO_V2 | INFO_ENCRYPTED | (INFO_TRIGGER if trigger else 0)
        nonce_buf = self._nonce
        nonce_buf[8] = info
        for i in range(4):
            nonce_buf[9 + i] = (counter >> (8 * i)) & 0xFF
        n = len(objects)
        out[0] = info
        body = memoryview(out)
        self.ccm.seal_into(nonce_buf, objects, body[1 : 1 + n + MIC], b"")
        # The tag follows the counter on the air: move it behind.
        for i in range(MIC):
            out[1 + n + COUNTER + i] = out[1 + n + i]
        for i in range(4):
            out[1 + n + i] = nonce_buf[9 + i]
        return 1 + n + COUNTER + MIC

    def seal(self, objects, counter, trigger=False):
        """Service data for ``objects`` (object bytes) as new bytes."""
        out = bytearray(1 + len(objects) + COUNTER + MIC)
        self.seal_into(objects, counter, out, trigger)
        return bytes(out)


def advert(service_data, name=None):
    """Advertising data: flags (LE general discoverable, no BR/EDR), the BTHome service data, an optional name."""
    out = bytearray((2, _AD_FLAGS, 0x06, len(service_data) + 3, _AD_SERVICE_DATA_16, SERVICE_UUID & 0xFF,
                     SERVICE_UUID >> 8))
    out += service_data
    if name:
        out += bytes((len(name) + 1, 0x09)) + name.encode()
    if len(out) > 31:
        raise DecodeError(_text(8, len(out)))
    return bytes(out)


# What each battery role advertises: protocols.ble_adverts describes the tables; they live here, beside
# the packing they drive, so that a node imports one module for its adverts (a module of its own costs RAM).
# The tables, one line per role: its name and role id (as in protocols.roles), its reading rows
# ("register:object:mul:div"), "|", its alarms ("status bits:object", "+" when the flag also goes in the
# reading advert). Object ids (this module's) and status bits (protocols.roles.<role>) are
# hexadecimal, mul and div decimal; tests hold the ids and bits equal to the named constants. Text, parsed by
# role() for the role asked (protocols.ble_adverts reads them all for the gateway): a node holds its own role's
# tuples only, where tuples written out here would all be objects in its RAM.
ROLE_ADVERTS = const(
    "meter 2 battery:0c:1:1 volume:4f:1000:1 | 0002:20+ 000c:26+ 0010:2b+\n"
    # the environment node's reading advert has no room left: its alarm goes in alarm adverts only
    "env 3 temperature:02:1:1 humidity:2e:1:100 pressure:04:1:10 pm25:0d:1:10 pm10:0e:1:10 | 0007:26\n"
)
MAX_OBJECTS = const(15)


def role(name):
    """(rows, alarms in the reading advert, alarms) of a BLE role; KeyError naming the roles that advertise.

    A row is ``(register name, BTHome object id, mul, div)``, an alarm ``(status bits, BTHome object id)``.
    """
    for line in ROLE_ADVERTS.split("\n"):
        words = line.split()
        if words and words[0] == name:
            cut = words.index("|")
            rows = tuple((w[0], int(w[1], 16), int(w[2]), int(w[3])) for w in (x.split(":") for x in words[2:cut]))
            alarms = []
            in_reading = []
            for word in words[cut + 1 :]:
                bits, object_id = word.rstrip("+").split(":")
                alarms.append((int(bits, 16), int(object_id, 16)))
                if word.endswith("+"):
                    in_reading.append(alarms[-1])
            return rows, tuple(in_reading), tuple(alarms)
    roles = ", ".join(line.split()[0] for line in ROLE_ADVERTS.split("\n") if line)
    raise KeyError("role %r does not advertise over BLE (roles: %s)" % (name, roles))


def pack_reading(buf, rows, alarms, values, status):
    """Object bytes of a reading advert into ``buf``; their length.

    ``values`` gives each row's register raw value by index (a list or tuple
    in the order of ``rows``), so the node allocates no dictionary.
    """
    pos = 0
    for i in range(len(rows)):
        row = rows[i]
        raw = values[i] * row[2] // row[3]
        if row[1] == WATER:
            raw &= 0xFFFFFFFF  # BTHome's water object wraps (see the module's docstring)
        pos = pack_into(buf, pos, row[1], raw)
    return pack_alarms(buf, pos, alarms, status)


def pack_alarms(buf, pos, alarms, status):
    """The alarm flags as BTHome binary objects at ``buf[pos]``; the position after them."""
    # BTHome asks for objects in ascending id order; the tables list them so.
    for bits, object_id in alarms:
        pos = pack_into(buf, pos, object_id, 1 if status & bits else 0)
    return pos
