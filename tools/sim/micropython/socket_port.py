"""The lamp host's drop wired by the bus's AF_UNIX socket (MicroPython): see :class:`SocketPort`."""

import asyncio
import errno
import socket
import struct
import time
from asyncio import core as _core

from firmware.modbus_slave import silence_us

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MIN_SILENCE_US = const(10000)  # the virtual board's frame gap on a pty (boards/sim: SimPort), kept alike here
_SOCK_SEQPACKET = const(5)  # Linux's; the unix port's socket module does not name it
_STAMP = const(8)  # a line time: "<q", microseconds of CLOCK_MONOTONIC (time.ticks_us on the unix port)
_FRAME_MAX = const(256)  # the bus hands a transmission over in pieces of this size at most


def _readable(sock):
    """Wait, in the event loop's poller, until ``sock`` can be read (as ``asyncio.StreamReader`` does)."""
    yield _core._io_queue.queue_read(sock)


class _LineTimes:
    """The bus's messages on a link with line times: their bytes, and ``line_end``, when the last one ended.

    One ``recv`` per message: MicroPython's stream ``readinto`` and ``read`` go on reading while messages
    are queued, which joins two of them and reads the second one's line time as the line's bytes.
    """

    def __init__(self, sock):
        self._sock = sock
        self.line_end = 0

    async def readinto(self, buf):
        """The next message's bytes into ``buf``; their count (0: the bus hung up)."""
        while True:
            await _readable(self._sock)
            try:
                msg = self._sock.recv(_STAMP + _FRAME_MAX)
            except OSError as exc:
                if exc.errno == errno.EAGAIN:
                    continue
                raise
            if not msg:
                return 0
            if len(msg) > _STAMP:
                break  # a bare stamp carries nothing: wait for the next message
        self.line_end = struct.unpack_from("<q", msg)[0]
        n = len(msg) - _STAMP
        buf[0:n] = memoryview(msg)[_STAMP:]
        return n


class SocketPort:
    """The host's drop wired by the bus's AF_UNIX socket: the face of the virtual board's ``SimPort``, no pty.

    ``address``: ``@name`` (Linux's abstract namespace, as the bus publishes it)
    or a socket file's path. The socket is non-blocking, so that a read returns
    what has arrived and ``asyncio.StreamReader`` waits in the event loop's
    poll, as ``SimPort`` does with a raw pty (VMIN = VTIME = 0). The frame gap is
    ``SimPort``'s, so the host frames the bytes alike on either link. A socket
    needs no kernel worker thread between the bus's write and this read, which
    a pty does (on a busy machine that thread waits for a CPU).

    ``line_times``: the bus's ``--line-times`` link (``tools.sim.bus_drops.SocketDrop``),
    messages that carry line times: ``stream.line_end`` is when the last bytes
    read ended on the line, the ``ticks_us`` a UART's receive interrupt would
    have seen, and each answer says when it was written.
    """

    def __init__(self, address, baud, silence=0, line_times=False):
        self.baud = baud
        self.silence_us = silence or max(silence_us(baud), _MIN_SILENCE_US)
        path = b"\0" + address[1:].encode() if address.startswith("@") else address.encode()
        self.line_times = line_times
        self._sock = socket.socket(socket.AF_UNIX, _SOCK_SEQPACKET if line_times else socket.SOCK_STREAM)
        # The unix port takes a raw sockaddr: sockaddr_un is the family (native 16 bits) and the path.
        self._sock.connect(struct.pack("H", socket.AF_UNIX) + path)
        self._sock.setblocking(False)
        self.stream = _LineTimes(self._sock) if line_times else asyncio.StreamReader(self._sock)

    async def send(self, buf, n):
        """Transmit ``buf[0:n]``."""
        if self.line_times:  # one message, whole or not at all
            message = struct.pack("<q", time.ticks_us()) + bytes(buf[0:n])
            while not self._sock.write(message):
                await asyncio.sleep_ms(1)
            return
        mv = memoryview(buf)
        done = 0
        while done < n:
            w = self._sock.write(mv[done:n])
            if w:
                done += w
            else:
                await asyncio.sleep_ms(1)

    def close(self):
        """Hang up."""
        self._sock.close()
