"""A virtual RS-485 bus: one process, a pseudo-terminal or socket per drop, every byte to every other drop.

Run it as ``python -m tools.sim.bus --drops 8 --ports ports.json``. It opens one
pty for the Modbus master and one per node drop (or a socket, ``--link socket``
below), writes their addresses to the ``--ports`` file (``{"master": ...,
"drops": [...], "baud": ..., "paced": ..., "link": ..., "pid": ...}``, written
atomically) and serves until SIGTERM or SIGINT.

What it models, and what it does not:

- Multi-drop, half-duplex: a byte written by any drop reaches every *other*
  drop (a transceiver does not hear its own transmission).
- ``--paced``: bytes travel at the line rate, one character every 11/baud s
  (8E1 or 8N2: start + 8 data + parity or second stop + stop). Each sender
  transmits its bytes in order; a byte is delivered at the end of its
  character slot, so N bytes take at least N*11/baud s. When two drops transmit
  in the same slot (two nodes answering at once, a master that does not wait),
  the receivers get the bitwise AND of the colliding bytes, which rarely makes
  a valid frame; such slots are counted as ``collisions``. What the line
  carries from the moment it gets busy until it is idle again (one frame, as a
  UART sends a frame written in one go) reaches the receivers in one write at
  the end of its last character slot: the bus process's own scheduling delays
  (it is a process on a shared machine) cannot open gaps inside a frame, which
  a receiver would take for the frame's end. A transmission longer than
  ``FRAME_MAX`` (no Modbus RTU frame is) goes out in pieces of that size.
  The bus process sleeps until a transmission's end (``Bus._due``), woken
  early by any drop that starts sending, rather than at every character
  slot: a quarter of the CPU it took at 115200 bit/s, the same timing.
- Unpaced (the default): every chunk a drop writes is delivered at once, as
  fast as the kernel moves it; cheap enough for a whole street of nodes.
- ``--noise P``: each byte, with probability P, has one random bit flipped.
  ``--drop P``: each byte, with probability P, is lost. Faults happen on the
  line, so every receiver sees the same corrupted byte. ``--seed`` makes runs
  repeatable.
- Parity, stop bits and baud-rate mismatches are not modelled: a pty carries
  bytes, not bits; ``--baud`` only sets the pacing.

``--trace PATH`` timestamps the traffic for timing checks: one JSON line per
event, ``[t, "in", drop, n]`` when the bus reads ``n`` bytes a drop sent and
``[t, "out", drop, n]`` when it delivers ``n`` bytes of that drop's to the
others (in paced mode at the end of their last character slot), ``t`` in
seconds of ``time.monotonic()``. Written at every housekeeping (once a second)
and at exit.

The bus keeps the device side of every pty open itself, so a drop whose process
dies (a node's power cut) never turns into EIO for the others; bytes for a drop
whose buffer is full are dropped and counted (``overflow``) instead of stalling
the bus, as a UART with a full FIFO would lose them.

``--answers-to-master``: a node drop's frames (answers) reach the master only;
requests and broadcasts still reach every drop and the line's timing is the
same. It spares lamps hosted many to a process waking for answers no lamp acts
on (why it matters: ``tools/bench/bus.py``). ``--line-times`` (socket drops):
each message carries when it ended on the line, or when the node wrote it
(``bus_drops.SocketDrop`` says why).

``--link socket`` wires the node drops with AF_UNIX stream sockets instead of
ptys (the master stays a pty: the gateway opens a serial device). The bus
listens on one address per drop in Linux's abstract namespace (published in
the ports file as ``@name``, ``"link": "socket"``; no file to clean up) and
takes the node that connects as the one wired to the drop. Why: Linux hands a
pty's bytes on through a kernel worker thread of ordinary priority, which on a
busy machine waits for a CPU whatever the priority of the processes at either
end; a socket's write wakes the reader itself. The timing model is the same
for both links (:class:`SocketDrop`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import select
import selectors
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tools.sim.bus_drops import Drop, PtyDrop, SocketDrop
from tools.sim.line_faults import LineFaults

BITS_PER_CHAR = 11
FRAME_MAX = 256
"""Bytes of one Modbus RTU frame at most: a transmission is held for its receivers up to this size."""
_WAKE_LAG_MAX = 0.0005  # a longer lateness is the machine being busy, not waking: not waited for spinning
LINKS = ("pty", "socket")
"""How nodes attach to their drops (``--link``): see the module docstring."""
_BUS_IDS = itertools.count()  # tells apart the socket addresses of several buses in one process


class Bus:
    """The bus; :meth:`serve` runs it in the calling thread until :meth:`stop` or a signal."""

    def __init__(
        self,
        drops: int,
        *,
        baud: int = 19200,
        paced: bool = False,
        noise: float = 0.0,
        drop: float = 0.0,
        seed: int = 0,
        link: str = "pty",
        answers_to_master: bool = False,
        line_times: bool = False,
    ) -> None:
        if drops < 1:
            raise ValueError("a bus needs at least one node drop")
        if link not in LINKS:
            raise ValueError(f"link {link!r}: one of {', '.join(LINKS)}")
        if line_times and link != "socket":
            raise ValueError("--line-times needs --link socket")
        if not 0.0 <= noise <= 1.0 or not 0.0 <= drop <= 1.0:
            raise ValueError("--noise and --drop are probabilities between 0 and 1")
        self.baud = baud
        self.paced = paced
        self.faults = LineFaults(noise, drop, seed)
        self.char_time = BITS_PER_CHAR / baud
        self.link = link
        self.answers_to_master = answers_to_master
        """Node drops' frames reach the master only (``--answers-to-master``, see the module docstring)."""
        self.master = PtyDrop("master")  # the gateway opens a serial device, as on the cabinet
        if link == "socket":
            prefix = f"streetedge-bus-{os.getpid()}-{next(_BUS_IDS)}"
            self.drops: list[Drop] = [SocketDrop(f"drop{i}", f"{prefix}-drop{i}", line_times) for i in range(drops)]
        else:
            self.drops = [PtyDrop(f"drop{i}") for i in range(drops)]
        self.all = [self.master, *self.drops]
        self.collisions = 0  # character slots in which two drops transmitted
        self._slot_start: float | None = None  # start of the current character slot (paced)
        self._line_free = 0.0  # when the last transmission ended (paced)
        self._wake_lag = 0.0  # how late the process wakes after a timer, lately (see _wait)
        self._carried: list[tuple[str, list[Drop], bytes]] = []  # (sender, receivers, bytes) of this transmission
        self._carried_bytes = 0
        self._running = False
        self.trace: list[tuple[float, str, str, int]] | None = None  # see --trace
        self._sel = selectors.DefaultSelector()
        for d in self.all:
            if isinstance(d, SocketDrop):
                self._sel.register(d.listener, selectors.EVENT_READ, d)
            else:
                self._sel.register(d.fd, selectors.EVENT_READ, d)

    def ports(self) -> dict[str, Any]:
        """The device paths to give to the master and to each node."""
        return {
            "master": self.master.path,
            "drops": [d.path for d in self.drops],
            "baud": self.baud,
            "paced": self.paced,
            "link": self.link,
            "pid": os.getpid(),
        }

    def stats(self) -> dict[str, Any]:
        """Counters since the bus started."""
        return {
            "corrupted": self.faults.corrupted,
            "lost": self.faults.lost,
            "collisions": self.collisions,
            "drops": {
                d.name: {"tx": d.tx_bytes, "rx": d.rx_bytes, "overflow": d.overflow}
                for d in self.all
            },
        }

    def stop(self) -> None:
        """Make :meth:`serve` return after its current iteration."""
        self._running = False

    def close(self) -> None:
        """Release every pty."""
        self._sel.close()
        for d in self.all:
            d.close()

    def flush_trace(self, path: Path) -> None:
        """Append the traced events to ``path`` (JSON lines) and forget them."""
        if not self.trace:
            return
        with path.open("a") as f:
            f.writelines(json.dumps(event) + "\n" for event in self.trace)
        self.trace.clear()

    def serve(
        self, *, stats_path: Path | None = None, watch_parent: bool = False, trace_path: Path | None = None
    ) -> None:
        """Move bytes until stopped; with ``watch_parent``, also stop when the parent dies."""
        parent = os.getppid()
        self._running = True
        next_house = time.monotonic() + 1.0
        while self._running:
            ready = self._wait(self._due())
            if self.paced:
                self._pace(time.monotonic())  # the slots that ended before what was just read began
            for key in ready:
                d = key.data
                if isinstance(d, SocketDrop) and key.fileobj is d.listener:
                    self._wire(d)
                else:
                    self._receive(d)
            now = time.monotonic()
            if self.paced:
                self._pace(now)
            if now >= next_house:
                next_house = now + 1.0
                if watch_parent and os.getppid() != parent:
                    break  # orphaned: whoever started the street is gone
                if stats_path is not None:
                    _write_json(stats_path, self.stats())
                if trace_path is not None:
                    self.flush_trace(trace_path)

    def _due(self) -> float | None:
        """When the line next needs the bus: the end of the transmission under way (None: the line is idle).

        One sender: the end of its last queued character (or of a full frame's worth), so the bus sleeps
        through a frame instead of waking for each of its characters (10,473 a second at 115200 bit/s);
        bytes from another drop wake it meanwhile. Several senders (a collision): the end of the current
        slot, as a collision is played slot by slot.
        """
        if self._slot_start is None:
            return None
        active = [d for d in self.all if d.pending]
        if len(active) != 1:
            return self._slot_start + self.char_time
        chars = min(len(active[0].pending), max(1, FRAME_MAX - self._carried_bytes))
        return self._slot_start + chars * self.char_time

    def _wait(self, due: float | None) -> list[selectors.SelectorKey]:
        """The drops with something to read (or a node to wire), waiting at most until ``due``."""
        if due is None:
            return [key for key, _ in self._sel.select(1.0)]
        timeout = due - time.monotonic()
        # select(2), not epoll, whose whole milliseconds (rounded up) would hand a frame over up to 1 ms late:
        # select takes microseconds (the bus's few hundred descriptors at most stay below its limit, 1024).
        fds = [key.fd for key in self._sel.get_map().values()]
        if timeout <= 0.0:
            readable, _, _ = select.select(fds, [], [], 0)
            return [self._sel.get_key(fd) for fd in readable]
        # A process woken from sleep runs some time after its timer (a virtual CPU leaving its idle state takes
        # ~0.1 ms here): ask to be woken that much early, then watch the drops without sleeping until ``due``.
        asked = max(0.0, timeout - self._wake_lag)
        readable, _, _ = select.select(fds, [], [], asked)
        if readable:
            return [self._sel.get_key(fd) for fd in readable]
        lag = time.monotonic() - (due - timeout + asked)
        self._wake_lag += (min(lag, _WAKE_LAG_MAX) - self._wake_lag) / 16  # a running mean of the recent ones
        while not readable and time.monotonic() < due:
            readable, _, _ = select.select(fds, [], [], 0)
        return [self._sel.get_key(fd) for fd in readable]

    def _wire(self, d: SocketDrop) -> None:
        conn = d.accept()
        if conn is None:
            return
        self._hang_up(d)  # a node wired before gives way to the new one
        d.wire(conn)
        self._sel.register(d.fd, selectors.EVENT_READ, d)

    def _hang_up(self, d: SocketDrop) -> None:
        if d.fd >= 0:
            self._sel.unregister(d.fd)
            d.hang_up()

    def _receive(self, sender: Drop) -> None:
        try:
            data, wrote = sender.read()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data, wrote = b"", None  # a pty: no EIO while the bus holds the slave end; a socket: reset by the node
        if not data:
            if isinstance(sender, SocketDrop) and wrote is None:  # (a bare line time carries no bytes)
                self._hang_up(sender)  # the node's end is closed: the drop is unwired, the line goes on
            return
        sender.tx_bytes += len(data)
        start = time.monotonic()
        if wrote is not None and self.paced and self._slot_start is None:
            # A node that says when it wrote (--line-times) started then, as a UART does, once the line was free.
            start = min(start, max(wrote, self._line_free))
        if self.trace is not None:
            self.trace.append((start, "in", sender.name, len(data)))
        if not self.paced:
            self._deliver(sender, self.faults.apply(data))
            return
        if self._slot_start is None:
            self._slot_start = start  # an idle line: transmission starts now
        sender.pending += data

    def _pace(self, now: float) -> None:
        """Deliver every character whose slot has ended by ``now``."""
        if self._slot_start is None:
            return
        slots = int((now - self._slot_start) / self.char_time)
        if slots <= 0:
            return
        active = [d for d in self.all if d.pending]
        if len(active) == 1:
            sender = active[0]
            n = min(slots, len(sender.pending))
            chunk = bytes(sender.pending[:n])
            del sender.pending[:n]
            self._carry(sender.name, [d for d in self.all if d is not sender], self.faults.apply(chunk))
        else:
            n = 0
            while n < slots and active:
                self._collide_one_slot(active)
                active = [d for d in active if d.pending]
                n += 1
        if any(d.pending for d in self.all):
            self._slot_start += n * self.char_time
        else:
            self._line_free = self._slot_start + n * self.char_time
            self._slot_start = None  # the line goes idle: the transmission has ended
            self._hand_over(self._line_free)

    def _collide_one_slot(self, active: list[Drop]) -> None:
        value = 0xFF
        for d in active:
            value &= d.pending[0]
            del d.pending[:1]
        if len(active) > 1:
            self.collisions += 1
        self._carry("+".join(d.name for d in active), [d for d in self.all if d not in active],
                    self.faults.apply(bytes((value,))))

    def _carry(self, sender: str, receivers: list[Drop], data: bytes) -> None:
        """``data`` has crossed the line: held for ``receivers`` until the transmission ends (or fills a frame)."""
        if not data:
            return
        last = self._carried[-1] if self._carried else None
        if last is not None and last[0] == sender:
            self._carried[-1] = (sender, receivers, last[2] + data)
        else:
            self._carried.append((sender, receivers, data))
        self._carried_bytes += len(data)
        if self._carried_bytes >= FRAME_MAX:
            self._hand_over()

    def _hand_over(self, end: float | None = None) -> None:
        """Write what the line carried to its receivers, each sender's bytes in one write (``end``: when it ended)."""
        for sender, receivers, data in self._carried:
            if self.trace is not None:
                self.trace.append((time.monotonic(), "out", sender, len(data)))
            to_master_only = self.answers_to_master and "master" not in sender.split("+")
            for d in receivers:
                if d is self.master or not to_master_only:
                    self._write(d, data, end)
        self._carried.clear()
        self._carried_bytes = 0

    def _deliver(self, sender: Drop, data: bytes) -> None:
        if not data:
            return
        if self.trace is not None:
            self.trace.append((time.monotonic(), "out", sender.name, len(data)))
        for d in self.all:
            if d is not sender and (d is self.master or sender is self.master or not self.answers_to_master):
                self._write(d, data)

    def _write(self, d: Drop, data: bytes, end: float | None = None) -> None:
        if isinstance(d, SocketDrop):
            if d.fd < 0:
                self._wire(d)  # a node that connected since the selector last looked gets these bytes too
            n = d.write(data, end)
            if n is None:
                # The node hung up and the selector has not said so yet: a node wired in its place gets them.
                self._hang_up(d)
                self._wire(d)
                n = d.write(data, end)
            if d.fd < 0:
                return  # nobody is wired to this drop: the bytes go nowhere, as on a bare stretch of cable
        else:
            n = d.write(data, end)
        d.rx_bytes += n or 0
        d.overflow += len(data) - (n or 0)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of ``python -m tools.sim.bus``."""
    p = argparse.ArgumentParser(prog="python -m tools.sim.bus", description=__doc__.splitlines()[0])
    p.add_argument("--drops", type=int, required=True, help="node drops besides the master")
    p.add_argument("--ports", required=True, help="write the pty paths to this JSON file")
    p.add_argument("--baud", type=int, default=19200)
    p.add_argument("--paced", action="store_true", help="deliver bytes at the line rate")
    p.add_argument("--link", choices=LINKS, default="pty",
                   help="how nodes attach to their drops: a pty each, or an AF_UNIX socket the bus listens on "
                        "(the master is always a pty)")
    p.add_argument("--answers-to-master", action="store_true",
                   help="what node drops send reaches the master only (hosted lamps: see the module docstring)")
    p.add_argument("--line-times", action="store_true",
                   help="socket drops exchange line times (tools/sim/bus_drops.py, SocketDrop)")
    p.add_argument("--noise", type=float, default=0.0, help="probability of a flipped bit per byte")
    p.add_argument("--drop", type=float, default=0.0, help="probability of a lost byte")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stats", default=None, help="write counters here every second and at exit")
    p.add_argument("--trace", default=None, help="timestamp every chunk in and out here (JSON lines)")
    p.add_argument("--watch-parent", action="store_true", help="exit when the parent process dies")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the bus until SIGTERM/SIGINT."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        bus = Bus(args.drops, baud=args.baud, paced=args.paced, noise=args.noise, drop=args.drop, seed=args.seed,
                  link=args.link, answers_to_master=args.answers_to_master, line_times=args.line_times)
    except ValueError as e:
        parser.error(str(e))  # one line and exit 2

    def _on_signal(signum: int, frame: object) -> None:
        bus.stop()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    stats_path = Path(args.stats) if args.stats else None
    trace_path = Path(args.trace) if args.trace else None
    if trace_path is not None:
        bus.trace = []
    try:
        _write_json(Path(args.ports), bus.ports())
        bus.serve(stats_path=stats_path, watch_parent=args.watch_parent, trace_path=trace_path)
    except SystemExit:
        pass
    finally:
        if stats_path is not None:
            _write_json(stats_path, bus.stats())
        if trace_path is not None:
            bus.flush_trace(trace_path)
        bus.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
