"""The lamp host's drop wired by the bus's AF_UNIX socket (MicroPython): see :class:`SocketPort`."""

import asyncio
import socket
import struct

from firmware.modbus_slave import silence_us

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MIN_SILENCE_US = const(10000)  # the virtual board's frame gap on a pty (boards/sim: SimPort), kept alike here


class SocketPort:
    """The host's drop wired by the bus's AF_UNIX socket: the face of the virtual board's ``SimPort``, no pty.

    ``address``: ``@name`` (Linux's abstract namespace, as the bus publishes it)
    or a socket file's path. The socket is non-blocking, so that a read returns
    what has arrived and ``asyncio.StreamReader`` waits in the event loop's
    poll, as ``SimPort`` does with a raw pty (VMIN = VTIME = 0). The frame gap is
    ``SimPort``'s, so the host frames the bytes alike on either link. A socket
    needs no kernel worker thread between the bus's write and this read, which
    a pty does (on a busy machine that thread waits for a CPU).
    """

    def __init__(self, address, baud, silence=0):
        self.baud = baud
        self.silence_us = silence or max(silence_us(baud), _MIN_SILENCE_US)
        path = b"\0" + address[1:].encode() if address.startswith("@") else address.encode()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # The unix port takes a raw sockaddr: sockaddr_un is the family (native 16 bits) and the path.
        self._sock.connect(struct.pack("H", socket.AF_UNIX) + path)
        self._sock.setblocking(False)
        self.stream = asyncio.StreamReader(self._sock)

    async def send(self, buf, n):
        """Transmit ``buf[0:n]``."""
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
