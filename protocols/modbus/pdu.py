"""Modbus vocabulary: function codes, exception codes, limits, and the decoded values.

A :class:`Request` is what a slave framer hands the node: a plain object so that
it costs one small allocation on MicroPython; attributes that only some
functions carry (``byte_count``, ``value``, ``read_address``, ``read_count``)
are class-level defaults, set on the instance only when the frame has them,
which keeps the instance's attribute table small.
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
FC_READ_FILE = const(20)
FC_WRITE_FILE = const(21)
FC_READ_WRITE_MULTIPLE = const(23)
FILE_REFERENCE = const(6)  # the reference type every file sub-request carries

EX_ILLEGAL_FUNCTION = const(1)
EX_ILLEGAL_ADDRESS = const(2)
EX_ILLEGAL_VALUE = const(3)
EX_DEVICE_FAILURE = const(4)

BROADCAST = const(0)
MAX_UNIT = const(247)
MAX_READ_COUNT = const(125)
MAX_WRITE_COUNT = const(123)
MAX_RW_WRITE_COUNT = const(121)  # function 23: the write's limit (its frame also carries the read range)
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
    list of the ``byte_count // 2`` registers sent. For 23: the write's fields
    as for 16 (``address``, ``count``, ``byte_count``, ``values``), plus the
    read range ``read_address``, ``read_count``. Validation against the
    Modbus limits is ``respond()``'s job, so that it can answer with the right
    exception code.
    """

    byte_count = 0
    read_address = 0  # 23 only
    read_count = 0
    value: "int | None" = None
    data: "bytes | None" = None  # 20/21: the PDU after the function code (byte count, sub-requests)
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
            and self.read_address == other.read_address
            and self.read_count == other.read_count
        )

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        text = "Request(unit=%d, function=%d, address=%d, count=%d, values=%r" % (
            self.unit,
            self.function,
            self.address,
            self.count,
            self.values,
        )
        if self.function == FC_READ_WRITE_MULTIPLE:
            text += ", read_address=%d, read_count=%d" % (self.read_address, self.read_count)
        return text + ")"


def _same(a, b):
    # values may be a list on one side and an array or tuple on the other.
    if a is None or b is None:
        return a is b
    return list(a) == list(b)
