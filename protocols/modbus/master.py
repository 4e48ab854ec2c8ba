"""The master (poller) end of Modbus RTU: build requests, check the response that comes back.

One transaction at a time, as on the wire: ``expect()`` what the request just
sent should bring back, ``feed()`` received bytes, ``next_response()`` until it
returns a :class:`Response` or raises. The adapter owns the clock: it calls
``reset()`` on a 3.5-character silence (then a partial response is reported
as truncated) and gives up after its own response timeout.
"""

from protocols.errors import FrameError, ModbusException
from protocols.modbus.crc import crc_ok, put_crc
from protocols.modbus.pdu import (
    BROADCAST,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    MAX_ADDRESS,
    MAX_FRAME,
    MAX_READ_COUNT,
    MAX_UNIT,
    MAX_VALUE,
    MAX_WRITE_COUNT,
    Response,
)
from protocols.modbus.rtu import Receiver, response_length


def _check(name, value, low, high):
    if type(value) is not int or not low <= value <= high:  # bool is no register field
        raise ValueError("%s must be an int %d..%d, got %r" % (name, low, high, value))


def read_pdu(function, address, count):
    """Return the PDU (function code and fields: no unit, no CRC) reading ``count`` registers.

    ``function`` is 3 (holding) or 4 (input); ``count`` 1..125. Modbus TCP
    sends it behind its MBAP header; :func:`build_read` frames it for RTU.
    """
    if function not in (FC_READ_HOLDING, FC_READ_INPUT):
        raise ValueError(
            "function must be 3 (read holding) or 4 (read input), got %r" % (function,)
        )
    _check("address", address, 0, MAX_ADDRESS)
    _check("count", count, 1, MAX_READ_COUNT)
    return bytes((function, address >> 8, address & 0xFF, 0, count))


def write_single_pdu(address, value):
    """Return the PDU writing ``value`` (0..65535) to holding ``address`` (function 6)."""
    _check("address", address, 0, MAX_ADDRESS)
    _check("value", value, 0, MAX_VALUE)
    return bytes((FC_WRITE_SINGLE, address >> 8, address & 0xFF, value >> 8, value & 0xFF))


def write_multiple_pdu(address, values):
    """Return the PDU writing 1..123 ``values`` from holding ``address`` on (function 16)."""
    _check("address", address, 0, MAX_ADDRESS)
    count = len(values)
    if not 1 <= count <= MAX_WRITE_COUNT:
        raise ValueError("values must hold 1..%d registers, got %d" % (MAX_WRITE_COUNT, count))
    out = bytearray(6 + 2 * count)
    out[0] = FC_WRITE_MULTIPLE
    out[1] = address >> 8
    out[2] = address & 0xFF
    out[3] = 0
    out[4] = count
    out[5] = 2 * count
    k = 6
    for i in range(count):
        v = values[i]
        if type(v) is not int or not 0 <= v <= MAX_VALUE:
            raise ValueError("values[%d] must be an int 0..65535, got %r" % (i, v))
        out[k] = v >> 8
        out[k + 1] = v & 0xFF
        k += 2
    return bytes(out)


def rtu_frame(unit, pdu):
    """Return the RTU frame of ``pdu`` for ``unit`` (0 broadcast, 1..247): unit, PDU, CRC."""
    _check("unit", unit, BROADCAST, MAX_UNIT)
    out = bytearray(len(pdu) + 3)
    out[0] = unit
    out[1 : len(pdu) + 1] = pdu
    put_crc(out, len(pdu) + 1)
    return bytes(out)


def build_read(unit, function, address, count):
    """Return the RTU frame (CRC included) reading ``count`` registers from ``address``.

    ``function`` is 3 (holding) or 4 (input); ``unit`` 0..247 (0 reaches every
    node but none answers: slaves ignore broadcast reads); ``count`` 1..125.
    """
    _check("unit", unit, BROADCAST, MAX_UNIT)
    return rtu_frame(unit, read_pdu(function, address, count))


def build_write_single(unit, address, value):
    """Return the RTU frame (CRC included) writing ``value`` (0..65535) to holding ``address``."""
    _check("unit", unit, BROADCAST, MAX_UNIT)
    return rtu_frame(unit, write_single_pdu(address, value))


def build_write_multiple(unit, address, values):
    """Return the RTU frame (CRC included) writing 1..123 ``values`` from ``address`` on."""
    _check("unit", unit, BROADCAST, MAX_UNIT)
    return rtu_frame(unit, write_multiple_pdu(address, values))


class MasterFramer(Receiver):
    """Incremental RTU response parser for the request a master has just sent.

    ``next_response()`` returns None while the response is incomplete, a
    :class:`Response` once it is complete and right, and raises otherwise:
    ``FrameError`` for a CRC mismatch, a response from another unit, another
    function, a byte count other than 2 * count, an echo that does not match,
    or a frame cut short by silence; ``ModbusException(function, code)`` for an
    exception response (after its CRC and unit were checked). After a
    response or an error the transaction is over: ``next_response()`` returns
    None until the next ``expect()``.
    """

    def __init__(self, size=MAX_FRAME):
        Receiver.__init__(self, size)
        self._unit = -1
        self._function = 0  # 0: no transaction
        self._count = 0
        self._address = -1
        self._limit = -1  # where the line went silent, inside the buffer

    def expect(self, unit, function, count=0, address=-1):
        """Start a transaction: wait for the response of ``unit`` to ``function``.

        ``count`` is the number of registers for reads (1..125); for 16 it may
        be given (1..123) to check the echo, likewise ``address`` for 06 and
        16. Broadcast (unit 0) gets no response and cannot be expected. Bytes
        still buffered from an earlier transaction are discarded.
        """
        _check("unit", unit, 1, MAX_UNIT)
        if function in (FC_READ_HOLDING, FC_READ_INPUT):
            _check("count", count, 1, MAX_READ_COUNT)
        elif function == FC_WRITE_MULTIPLE:
            _check("count", count, 0, MAX_WRITE_COUNT)
        elif function == FC_WRITE_SINGLE:
            count = 1
        else:
            raise ValueError("function must be 3, 4, 6 or 16, got %r" % (function,))
        if address != -1:
            _check("address", address, 0, MAX_ADDRESS)
        self._clear()
        self._limit = -1
        self._unit = unit
        self._function = function
        self._count = count
        self._address = address

    def reset(self):
        """The line went silent: a response still partial now will never complete."""
        if self._function and self._tail > self._head:
            if self._limit < 0:
                self._limit = self._tail
        else:
            self._clear()
            self._limit = -1

    def next_response(self):
        """Return the :class:`Response`, or None while it is incomplete (or nothing is expected)."""
        fc = self._function
        if not fc:
            return None
        buf = self._buf
        i = self._head
        limit = self._limit
        avail = (limit if limit >= 0 else self._tail) - i
        if avail < 2:
            return self._incomplete(avail)
        got = buf[i + 1]
        # Size the frame by what came: a length tells a corrupted frame (CRC)
        # from a genuine answer to something else.
        n = response_length(buf, i, avail)
        if n == 0 or n > MAX_FRAME:
            self._fail()
            raise FrameError("wrong function: expected %d, got %d" % (fc, got))
        if n < 0 or avail < n:
            return self._incomplete(avail)
        if not crc_ok(buf, i, n):
            self._fail()
            raise FrameError("CRC mismatch in a %d-byte response" % n)
        unit = buf[i]
        if unit != self._unit:
            self._fail()
            raise FrameError("wrong unit: expected %d, got %d" % (self._unit, unit))
        if got == fc | 0x80:
            code = buf[i + 2]
            self._fail()
            raise ModbusException(fc, code)
        if got != fc:
            self._fail()
            raise FrameError("wrong function: expected %d, got %d" % (fc, got))
        if fc == FC_READ_HOLDING or fc == FC_READ_INPUT:
            count = self._count
            if buf[i + 2] != 2 * count:
                self._fail()
                raise FrameError(
                    "wrong byte count: expected %d for %d registers, got %d"
                    % (2 * count, count, buf[i + 2])
                )
            values = [0] * count
            k = i + 3
            for j in range(count):
                values[j] = (buf[k] << 8) | buf[k + 1]
                k += 2
            resp = Response(unit, fc, 0, count, values)
        else:
            address = (buf[i + 2] << 8) | buf[i + 3]
            word = (buf[i + 4] << 8) | buf[i + 5]
            if self._address not in (-1, address):
                self._fail()
                raise FrameError(
                    "wrong address in echo: expected %d, got %d" % (self._address, address)
                )
            if fc == FC_WRITE_SINGLE:
                resp = Response(unit, fc, address, 1, [word])
                resp.value = word
            else:
                if self._count and word != self._count:
                    self._fail()
                    raise FrameError(
                        "wrong count in echo: expected %d, got %d" % (self._count, word)
                    )
                resp = Response(unit, fc, address, word)
        self._head = i + n
        self._function = 0
        self._limit = -1
        return resp

    def _incomplete(self, avail):
        # None (wait for bytes), unless the line already went silent.
        if self._limit >= 0:
            self._fail()
            raise FrameError("truncated response: %d bytes, then silence" % avail)

    def _fail(self):
        # The frame cannot be trusted, nor anything after it in this transaction.
        self._clear()
        self._limit = -1
        self._function = 0

    def _moved(self, by):
        if self._limit >= 0:
            self._limit = max(self._limit - by, 0)

    def _dropped(self):
        if self._limit > self._tail:
            self._limit = -1
