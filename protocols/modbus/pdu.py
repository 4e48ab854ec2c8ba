"""Modbus vocabulary: function codes, exception codes, limits, and the decoded values.

A :class:`Request` is what a slave framer hands the node: a plain object so that
it costs one small allocation on MicroPython; attributes that only some
functions carry (``byte_count``, ``value``) are class-level defaults, set on the
instance only when the frame has them, which keeps the instance's attribute
table small.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


FC_READ_COILS = const(1)
FC_READ_DISCRETE = const(2)
FC_READ_HOLDING = const(3)
FC_READ_INPUT = const(4)
FC_WRITE_COIL = const(5)
FC_WRITE_SINGLE = const(6)
FC_WRITE_COILS = const(15)
FC_WRITE_MULTIPLE = const(16)

EX_ILLEGAL_FUNCTION = const(1)
EX_ILLEGAL_ADDRESS = const(2)
EX_ILLEGAL_VALUE = const(3)
EX_DEVICE_FAILURE = const(4)

BROADCAST = const(0)
MAX_UNIT = const(247)
MAX_READ_COUNT = const(125)
MAX_WRITE_COUNT = const(123)
MAX_ADDRESS = const(0xFFFF)
MAX_VALUE = const(0xFFFF)
# An RTU frame (unit + PDU of at most 253 bytes + CRC) never exceeds 256 bytes.
MAX_FRAME = const(256)
MAX_READ_BITS = const(2000)
MAX_WRITE_BITS = const(1968)
# Function 05 carries a coil's new state as one of two words; anything else is an illegal value.
COIL_ON = const(0xFF00)
COIL_OFF = const(0x0000)


class Request:
    """A request frame addressed to this node (or broadcast), CRC already checked.

    ``unit``: 0 (broadcast) or the node's unit; ``broadcast``: ``unit == 0``;
    ``function``: the function code, possibly one the node does not support
    (then ``respond()`` answers EX_ILLEGAL_FUNCTION). For 03/04: ``address``,
    ``count`` (registers to read), ``values`` is None. For 06: ``address``,
    ``count`` = 1, ``values`` = ``[value]`` and ``value``. For 16: ``address``,
    ``count`` (quantity field), ``byte_count`` (as received) and ``values``, a
    list of the ``byte_count // 2`` registers sent. Validation against the
    Modbus limits is ``respond()``'s job, so that it can answer with the right
    exception code.
    """

    byte_count = 0
    value: "int | None" = None
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value

    def __init__(self, unit, function, address=0, count=0, values=None):
        self.unit = unit
        self.function = function
        self.address = address
        self.count = count
        self.values = values
        self.broadcast = unit == BROADCAST

    def __eq__(self, other):
        return (
            isinstance(other, Request)
            and self.unit == other.unit
            and self.function == other.function
            and self.address == other.address
            and self.count == other.count
            and _same(self.values, other.values)
            and self.byte_count == other.byte_count
        )

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Request(unit=%d, function=%d, address=%d, count=%d, values=%r)" % (
            self.unit,
            self.function,
            self.address,
            self.count,
            self.values,
        )


def _same(a, b):
    # values may be a list on one side and an array or tuple on the other.
    if a is None or b is None:
        return a is b
    return list(a) == list(b)


# -- coils and discrete inputs (functions 01, 02, 05, 15) ------------------------------------------
# PDUs only (function code first, no unit, no CRC or MBAP header): the same bytes travel in an
# RTU frame and behind a Modbus TCP header, so the framers add their own envelope.


def _check_range(name, value, low, high):
    if type(value) is not int or not low <= value <= high:  # bool is no address or count
        raise ValueError("%s must be an int %d..%d, got %r" % (name, low, high, value))


def read_bits_pdu(function, address, count):
    """The PDU reading ``count`` (1..2000) coils (function 1) or discrete inputs (2) from ``address``."""
    if function not in (FC_READ_COILS, FC_READ_DISCRETE):
        raise ValueError("function must be 1 (read coils) or 2 (read discrete inputs), got %r" % (function,))
    _check_range("address", address, 0, MAX_ADDRESS)
    _check_range("count", count, 1, MAX_READ_BITS)
    if address + count > MAX_ADDRESS + 1:
        raise ValueError("bits %d..%d run past address 65535" % (address, address + count - 1))
    return bytes((function, address >> 8, address & 0xFF, count >> 8, count & 0xFF))


def write_coil_pdu(address, on):
    """The PDU switching one coil (function 5): ``on`` true sends 0xFF00, false 0x0000."""
    _check_range("address", address, 0, MAX_ADDRESS)
    word = COIL_ON if on else COIL_OFF
    return bytes((FC_WRITE_COIL, address >> 8, address & 0xFF, word >> 8, word & 0xFF))


def write_coils_pdu(address, bits):
    """The PDU setting 1..1968 coils from ``address`` on (function 15); ``bits`` are 0/1 or booleans."""
    _check_range("address", address, 0, MAX_ADDRESS)
    count = len(bits)
    if not 1 <= count <= MAX_WRITE_BITS:
        raise ValueError("bits must hold 1..%d coils, got %d" % (MAX_WRITE_BITS, count))
    if address + count > MAX_ADDRESS + 1:
        raise ValueError("coils %d..%d run past address 65535" % (address, address + count - 1))
    packed = pack_bits(bits)
    head = bytes((FC_WRITE_COILS, address >> 8, address & 0xFF, count >> 8, count & 0xFF, len(packed)))
    return head + packed


def pack_bits(bits):
    """0/1 values -> bytes, first bit in the lowest bit of the first byte (the Modbus order)."""
    out = bytearray((len(bits) + 7) // 8)
    for i in range(len(bits)):
        b = bits[i]
        if b is True or b == 1:
            out[i >> 3] |= 1 << (i & 7)
        elif not (b is False or b == 0):
            raise ValueError("bits[%d] must be 0 or 1, got %r" % (i, b))
    return bytes(out)


def unpack_bits(data, count, offset=0):
    """``count`` bits packed from ``data[offset]`` on -> list of 0/1 (the padding bits of the last byte ignored)."""
    if len(data) - offset < (count + 7) // 8:
        raise ValueError("%d bits need %d bytes, got %d" % (count, (count + 7) // 8, len(data) - offset))
    return [(data[offset + (i >> 3)] >> (i & 7)) & 1 for i in range(count)]


def read_bits_answer(pdu, function, count):
    """The bits of a read-bits answer PDU (function, byte count, packed bits); ValueError if it is not one.

    An exception answer (function | 0x80) is the caller's to recognise first.
    """
    size = (count + 7) // 8
    if len(pdu) != 2 + size or pdu[0] != function or pdu[1] != size:
        raise ValueError(
            "not an answer of %d bits to function %d: %d bytes starting %s"
            % (count, function, len(pdu), " ".join("%02x" % b for b in pdu[:3]))
        )
    return unpack_bits(pdu, count, 2)
