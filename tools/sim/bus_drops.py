"""The drops of the virtual bus (:mod:`tools.sim.bus`): where a node is wired to the line, by a pty or a socket.

A drop holds the bytes its node put on the line until their character slots, its counters and its link;
the bus paces, hands over, collides and traces alike whatever the link.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
import tty

READ_SIZE = 65536
LINE_TIME = struct.Struct("<q")
"""A line time on a socket link with line times: microseconds of ``CLOCK_MONOTONIC``, every process's clock."""


class Drop:
    """One attachment point on the bus: its queue of bytes to put on the line, its counters, its link."""

    link = ""
    """How a node is wired to it: ``pty`` or ``socket``."""

    def __init__(self, name: str, fd: int, path: str) -> None:
        self.name = name
        self.fd = fd  # the bus's end (-1: nothing wired)
        self.path = path  # what a node opens or connects to
        self.pending = bytearray()  # bytes waiting for their character slot (paced mode)
        self.tx_bytes = 0  # bytes this drop put on the line
        self.rx_bytes = 0  # bytes delivered to this drop
        self.overflow = 0  # bytes lost because this drop's buffer was full

    def read(self) -> tuple[bytes, float | None]:
        """What the node sent since the last read (b"": it hung up), and when it wrote it if the link says."""
        return os.read(self.fd, READ_SIZE), None

    def write(self, data: bytes, line_end: float | None = None) -> int | None:
        """Bytes written to the node (0: its buffer is full), None if the link is broken or missing.

        ``line_end``: when the bytes' last character ended on the line, for a link that carries it.
        """
        if self.fd < 0:
            return None
        try:
            return os.write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError:
            return None

    def close(self) -> None:
        """Release the link."""


class PtyDrop(Drop):
    """A drop wired by a pty pair, the bus holding both ends (a node opens the device path)."""

    link = "pty"

    def __init__(self, name: str) -> None:
        fd, self.slave_fd = os.openpty()
        tty.setraw(fd)
        tty.setraw(self.slave_fd)
        os.set_blocking(fd, False)
        super().__init__(name, fd, os.ttyname(self.slave_fd))

    def close(self) -> None:
        """Close both ends of the pty."""
        for fd in (self.fd, self.slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


class SocketDrop(Drop):
    """A drop wired by an AF_UNIX stream socket: the bus listens on :attr:`path`, a node connects.

    ``fd`` is the connected node's socket, -1 while none is: bytes for an
    unwired drop go nowhere, uncounted (nothing listens on that stretch of
    cable). A node that connects while another is wired replaces it (a board
    swapped); one that hangs up (EOF) leaves the drop unwired, and the bus
    goes on. Everything else (pacing, hand-over, collisions, faults, trace,
    counters) is the bus's and does not depend on the link.

    With ``line_times`` the link is a ``SOCK_SEQPACKET`` socket whose every
    message opens with a :data:`LINE_TIME`: the bus's deliveries carry when
    their last character ended on the line, a node's writes when it wrote them.
    A UART timestamps both for its firmware within microseconds; a lamp host,
    a process that the machine wakes some 0.1 ms after the bus wrote, would
    otherwise count its t3.5 from its own read and answer that much later than
    a lamp with its own CPU (``tools.sim.bus --line-times``).
    """

    link = "socket"

    def __init__(self, name: str, address: str, line_times: bool = False) -> None:
        super().__init__(name, -1, "@" + address)
        self.line_times = line_times
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET if line_times else socket.SOCK_STREAM)
        self.listener.bind("\0" + address)  # abstract namespace: no file, gone with the process
        self.listener.listen(1)
        self.listener.setblocking(False)
        self.conn: socket.socket | None = None

    def accept(self) -> socket.socket | None:
        """A node's new connection, if one is waiting (:meth:`wire` it)."""
        try:
            conn, _ = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            return None
        conn.setblocking(False)
        return conn

    def wire(self, conn: socket.socket) -> None:
        """Make ``conn`` the node on this drop (after :meth:`hang_up` of the one before)."""
        self.conn, self.fd = conn, conn.fileno()

    def read(self) -> tuple[bytes, float | None]:
        """One message with line times (its stamp apart; a bare stamp: no bytes); the bytes that arrived without.

        A message too short to hold a stamp is taken as bytes without one: they reach the line all the same.
        """
        data = os.read(self.fd, READ_SIZE)
        if not self.line_times or len(data) < LINE_TIME.size:
            return data, None
        return data[LINE_TIME.size:], LINE_TIME.unpack_from(data)[0] / 1e6

    def write(self, data: bytes, line_end: float | None = None) -> int | None:
        """As :meth:`Drop.write`; with line times one whole message or nothing (0: the node's buffer is full)."""
        if not self.line_times:
            return super().write(data)
        stamp = LINE_TIME.pack(round((time.monotonic() if line_end is None else line_end) * 1e6))
        n = super().write(stamp + data)
        return n and len(data)

    def hang_up(self) -> None:
        """The node went away: the drop is unwired until the next connection."""
        if self.conn is not None:
            self.conn.close()
        self.conn, self.fd = None, -1

    def close(self) -> None:
        """Close the connection and stop listening."""
        self.hang_up()
        self.listener.close()
