"""A virtual RS-485 bus: one process, one pseudo-terminal per drop, every byte to every other drop.

Run it as ``python -m tools.sim.bus --drops 8 --ports ports.json``. It opens one
pty for the Modbus master and one per node drop, writes their device paths to
the ``--ports`` file (``{"master": ..., "drops": [...], "baud": ..., "paced": ...,
"pid": ...}``, written atomically) and serves until SIGTERM or SIGINT.

What it models, and what it does not:

- Multi-drop, half-duplex: a byte written by any drop reaches every *other*
  drop (a transceiver does not hear its own transmission).
- ``--paced``: bytes travel at the line rate, one character every 11/baud s
  (8E1 or 8N2: start + 8 data + parity or second stop + stop). Each sender
  transmits its bytes in order; a byte is delivered at the end of its
  character slot, so N bytes take at least N*11/baud s. When two drops transmit
  in the same slot (two nodes answering at once, a master that does not wait),
  the receivers get the bitwise AND of the colliding bytes, which rarely makes
  a valid frame; such slots are counted as ``collisions``. The bus's own
  scheduling jitter (it is a process on a shared machine) can add gaps between
  characters that a real UART would not make.
- Unpaced (the default): every chunk a drop writes is delivered at once, as
  fast as the kernel moves it; cheap enough for a whole street of nodes.
- ``--fifo S`` (paced): a receiver gets the characters of a frame in chunks, at
  most S seconds after each one's slot ended, and the frame's last character at
  its slot's end, as a UART's receive FIFO hands them to its CPU (a threshold or
  an idle timeout). The line's timing, which the frame gaps count from, is
  unchanged; every drop's process wakes once per chunk instead of once per
  character (with 247 lamps in 4 hosts at 115200 bit/s that wake-up cost more
  of the shared CPUs than the gateway's work).
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
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import selectors
import signal
import sys
import time
import tty
from pathlib import Path
from typing import Any

BITS_PER_CHAR = 11
RX_FIFO = 0.001
"""The ``--fifo`` of the bus benches: 1 ms, about 10 characters at 115200 bit/s (a 16550-style UART hands its
FIFO on at a threshold or after 4 idle characters; a USB adapter at its latency timer, 1-16 ms)."""
_READ_SIZE = 65536
_FINE = 0.002  # below this, wait for a character slot with a precise sleep instead of the selector


class Drop:
    """One attachment point on the bus: a pty pair, the bus holding both ends."""

    __slots__ = ("fd", "name", "overflow", "path", "pending", "rx_bytes", "slave_fd", "tx_bytes")

    def __init__(self, name: str) -> None:
        self.name = name
        self.fd, self.slave_fd = os.openpty()
        tty.setraw(self.fd)
        tty.setraw(self.slave_fd)
        os.set_blocking(self.fd, False)
        self.path = os.ttyname(self.slave_fd)
        self.pending = bytearray()  # bytes waiting for their character slot (paced mode)
        self.tx_bytes = 0  # bytes this drop put on the line
        self.rx_bytes = 0  # bytes delivered to this drop
        self.overflow = 0  # bytes lost because this drop's buffer was full

    def close(self) -> None:
        """Close both ends of the pty."""
        for fd in (self.fd, self.slave_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


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
        fifo: float = 0.0,
    ) -> None:
        if drops < 1:
            raise ValueError("a bus needs at least one node drop")
        if not 0.0 <= noise <= 1.0 or not 0.0 <= drop <= 1.0:
            raise ValueError("--noise and --drop are probabilities between 0 and 1")
        self.baud = baud
        self.paced = paced
        self.noise = noise
        self.drop = drop
        self.char_time = BITS_PER_CHAR / baud
        self._rng = random.Random(seed)
        self.master = Drop("master")
        self.drops = [Drop(f"drop{i}") for i in range(drops)]
        self.all = [self.master, *self.drops]
        self.corrupted = 0  # bytes with a flipped bit (noise)
        self.lost = 0  # bytes lost on the line (drop)
        self.collisions = 0  # character slots in which two drops transmitted
        self._slot_start: float | None = None  # start of the current character slot (paced)
        self.fifo = fifo  # see --fifo
        self._held = bytearray()  # characters whose slots ended, not yet handed on (--fifo)
        self._held_by: Drop | None = None
        self._held_since = 0.0  # when the first held character's slot ended
        self._running = False
        self.trace: list[tuple[float, str, str, int]] | None = None  # see --trace
        self._sel = selectors.DefaultSelector()
        for d in self.all:
            self._sel.register(d.fd, selectors.EVENT_READ, d)

    def ports(self) -> dict[str, Any]:
        """The device paths to give to the master and to each node."""
        return {
            "master": self.master.path,
            "drops": [d.path for d in self.drops],
            "baud": self.baud,
            "paced": self.paced,
            "pid": os.getpid(),
        }

    def stats(self) -> dict[str, Any]:
        """Counters since the bus started."""
        return {
            "corrupted": self.corrupted,
            "lost": self.lost,
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
            timeout = 1.0
            if self._slot_start is not None:
                timeout = max(0.0, self._next_wake() - time.monotonic())
                if 0.0 < timeout < _FINE:
                    # epoll rounds a timeout up to the next millisecond: a character slot (95 µs at
                    # 115200 bit/s) would end up to 1 ms late. Sleep the exact time, then look.
                    time.sleep(timeout)
                    timeout = 0.0
            for key, _ in self._sel.select(timeout):
                self._receive(key.data)
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

    def _receive(self, sender: Drop) -> None:
        try:
            data = os.read(sender.fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO cannot happen while the bus holds the slave end; be safe anyway
        if not data:
            return
        sender.tx_bytes += len(data)
        if self.trace is not None:
            self.trace.append((time.monotonic(), "in", sender.name, len(data)))
        if not self.paced:
            self._deliver(sender, self._line_faults(data))
            return
        if self._slot_start is None:
            self._slot_start = time.monotonic()  # an idle line: transmission starts now
        sender.pending += data

    def _next_wake(self) -> float:
        """When the next character must be handed on: at its slot's end, or with ``fifo`` when the FIFO is due."""
        assert self._slot_start is not None
        next_slot = self._slot_start + self.char_time
        active = [d for d in self.all if d.pending] if self.fifo else []
        if len(active) != 1:
            return next_slot
        frame_end = self._slot_start + len(active[0].pending) * self.char_time
        first = self._held_since if self._held else next_slot
        return min(frame_end, first + self.fifo)

    def _pace(self, now: float) -> None:
        """Deliver every character whose slot has ended by ``now`` (with ``fifo``: held up to that long)."""
        if self._slot_start is None:
            return
        slots = int((now - self._slot_start) / self.char_time)
        if slots <= 0:
            return
        active = [d for d in self.all if d.pending]
        if len(active) == 1:
            sender = active[0]
            n = min(slots, len(sender.pending))
            chunk = self._line_faults(bytes(sender.pending[:n]))
            del sender.pending[:n]
            if not self.fifo:
                self._deliver(sender, chunk)
            else:
                if self._held_by is not sender:
                    self._release()
                if not self._held:
                    self._held_since = self._slot_start + self.char_time
                self._held += chunk
                self._held_by = sender
                # A frame's last character goes at once (its timing is what the silences count from).
                if not sender.pending or now - self._held_since >= self.fifo:
                    self._release()
        else:
            self._release()
            n = 0
            while n < slots and active:
                self._collide_one_slot(active)
                active = [d for d in active if d.pending]
                n += 1
        if any(d.pending for d in self.all):
            self._slot_start += n * self.char_time
        else:
            self._slot_start = None  # the line goes idle

    def _release(self) -> None:
        """Hand on what the receivers' FIFO holds (``fifo``)."""
        if self._held_by is not None and self._held:
            self._deliver(self._held_by, bytes(self._held))
        self._held.clear()
        self._held_by = None

    def _collide_one_slot(self, active: list[Drop]) -> None:
        value = 0xFF
        for d in active:
            value &= d.pending[0]
            del d.pending[:1]
        if len(active) > 1:
            self.collisions += 1
        data = self._line_faults(bytes((value,)))
        if not data:
            return
        if self.trace is not None:
            self.trace.append((time.monotonic(), "out", "+".join(d.name for d in active), len(data)))
        for d in self.all:
            if d not in active:
                self._write(d, data)

    def _line_faults(self, data: bytes) -> bytes:
        if not self.noise and not self.drop:
            return data
        rng = self._rng
        out = bytearray()
        for byte in data:
            if self.drop and rng.random() < self.drop:
                self.lost += 1
                continue
            if self.noise and rng.random() < self.noise:
                out.append(byte ^ (1 << rng.randrange(8)))
                self.corrupted += 1
            else:
                out.append(byte)
        return bytes(out)

    def _deliver(self, sender: Drop, data: bytes) -> None:
        if not data:
            return
        if self.trace is not None:
            self.trace.append((time.monotonic(), "out", sender.name, len(data)))
        for d in self.all:
            if d is not sender:
                self._write(d, data)

    @staticmethod
    def _write(d: Drop, data: bytes) -> None:
        try:
            n = os.write(d.fd, data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            n = 0
        d.rx_bytes += n
        d.overflow += len(data) - n


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
    p.add_argument("--noise", type=float, default=0.0, help="probability of a flipped bit per byte")
    p.add_argument("--drop", type=float, default=0.0, help="probability of a lost byte")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stats", default=None, help="write counters here every second and at exit")
    p.add_argument("--trace", default=None, help="timestamp every chunk in and out here (JSON lines)")
    p.add_argument("--fifo", type=float, default=0.0,
                   help="paced: seconds a receiver's FIFO may hold characters before handing them on "
                        "(a frame's last character always goes at its slot's end; default 0: each at once)")
    p.add_argument("--watch-parent", action="store_true", help="exit when the parent process dies")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the bus until SIGTERM/SIGINT."""
    args = build_parser().parse_args(argv)
    bus = Bus(
        args.drops, baud=args.baud, paced=args.paced,
        noise=args.noise, drop=args.drop, seed=args.seed, fifo=args.fifo,
    )

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
