"""RTU framing shared by both ends: frame lengths from their first bytes, and the receive buffer.

An RTU frame carries no length field and no start marker: its end on the wire
is a 3.5-character silence, which only the adapter (firmware, gateway) can
see. The parsers here therefore work out the length a frame must have from its
function code (and byte count, where there is one) and trust it once the CRC
matches; the adapter calls ``reset()`` when it sees the silence.
"""

from protocols.modbus.pdu import MAX_FRAME

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_EXCEPTION_BIT = const(0x80)


def request_length(buf, i, avail):
    """Length of a request frame at ``buf[i]`` (``avail`` bytes there, at least 2).

    (Tuples of literals, never of imported names: MicroPython keeps the former
    as constants and would build the latter on every call.)

    Returns the length for every public function code of the Modbus
    Application Protocol v1.1b3 (so that a node can answer "illegal function"
    to those it does not implement), 0 for a code no master sends (garbage),
    or -1 when the length depends on a byte not received yet.
    """
    fc = buf[i + 1]
    if 1 <= fc <= 6 or fc == 8:  # 8: diagnostics, sub-function + one data word
        return 8
    if fc in (15, 16):
        return 9 + buf[i + 6] if avail > 6 else -1
    if fc in (7, 11, 12, 17):
        return 4
    if fc in (20, 21):
        return 5 + buf[i + 2] if avail > 2 else -1
    if fc == 22:
        return 10
    if fc == 23:
        return 13 + buf[i + 10] if avail > 10 else -1
    if fc == 24:
        return 6
    if fc == 43:  # MEI 14, read device identification
        return 7
    return 0


def response_length(buf, i, avail):
    """Length of a response frame at ``buf[i]`` (``avail`` bytes there, at least 2).

    Same conventions as :func:`request_length`. A slave uses it to pass over
    the responses of other slaves on a multi-drop bus.
    """
    fc = buf[i + 1]
    if fc & _EXCEPTION_BIT:
        return 5
    if 1 <= fc <= 4 or fc in (12, 17, 20, 21, 23):
        return 5 + buf[i + 2] if avail > 2 else -1
    if fc in (5, 6, 8, 11, 15, 16):
        return 8
    if fc == 7:
        return 5
    if fc == 22:
        return 10
    return 0


class Receiver:
    """A fixed receive buffer: bytes go in at ``tail``, frames are parsed at ``head``.

    The bytearray is allocated once; ``feed()`` never grows it. When a chunk
    does not fit, the oldest bytes are dropped (counted in ``bytes_dropped``),
    as a hunting parser would have dropped them anyway.
    """

    def __init__(self, size=MAX_FRAME):
        self._buf = bytearray(size)
        self._head = 0
        self._tail = 0
        self.bytes_dropped = 0

    def feed(self, data):
        """Append received bytes (bytes, bytearray or memoryview; any chunking)."""
        n = len(data)
        if n == 0:
            return
        buf = self._buf
        size = len(buf)
        if self._tail + n > size:
            self._compact()
            excess = self._tail + n - size
            if excess > 0:
                if n >= size:  # the chunk alone fills the buffer: keep only its end
                    self.bytes_dropped += self._tail + n - size
                    self._tail = 0
                    data = memoryview(data)[n - size :]
                    n = size
                else:
                    self.bytes_dropped += excess
                    self._head = excess
                    self._compact()
                self._dropped()
        tail = self._tail
        buf[tail : tail + n] = data
        self._tail = tail + n

    def buffered(self):
        """Number of bytes received and not yet consumed."""
        return self._tail - self._head

    def _clear(self):
        self._head = 0
        self._tail = 0

    def _compact(self):
        # Move the unparsed bytes to the front. A plain loop, because a slice
        # copy inside one buffer may overlap (memcpy, not memmove, underneath).
        head = self._head
        if head == 0:
            return
        buf = self._buf
        n = self._tail - head
        for k in range(n):
            buf[k] = buf[head + k]
        self._head = 0
        self._tail = n
        self._moved(head)

    def _moved(self, by):
        """Hook: the buffer contents moved ``by`` bytes towards the front."""

    def _dropped(self):
        """Hook: unparsed bytes were discarded on overflow; a parser must resynchronise."""
