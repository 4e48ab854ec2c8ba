"""The drops of the virtual bus (:mod:`tools.sim.bus`): where a node is wired to the line, by a pty or a socket.

A drop holds the bytes its node put on the line until their character slots, its counters and its link;
the bus paces, hands over, collides and traces alike whatever the link.
"""

from __future__ import annotations

import contextlib
import os
import socket
import tty


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

    def write(self, data: bytes) -> int | None:
        """Bytes written to the node (0: its buffer is full), None if the link is broken or missing."""
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
    """

    link = "socket"

    def __init__(self, name: str, address: str) -> None:
        super().__init__(name, -1, "@" + address)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
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

    def hang_up(self) -> None:
        """The node went away: the drop is unwired until the next connection."""
        if self.conn is not None:
            self.conn.close()
        self.conn, self.fd = None, -1

    def close(self) -> None:
        """Close the connection and stop listening."""
        self.hang_up()
        self.listener.close()
