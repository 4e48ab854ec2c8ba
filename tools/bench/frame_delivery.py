"""How the paced virtual bus hands a frame to its receivers: reads per frame per drop, and the bus's CPU.

``python -m tools.bench.frame_delivery [--baud 19200] [--drops 35] [--frames 20]``

The master writes ``frames`` broadcast-sized frames (252 bytes, an update chunk),
each followed by the spec's 100 ms turnaround, on a paced bus with ``drops``
node drops; one reader here drains every drop as soon as it is readable, as a
node's event loop does. Reported: reads per drop per frame (each one a wake-up
of a node's interpreter on the virtual street), bytes received against bytes
sent, and the CPU the bus process spent.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path

from tools.sim.bus import BITS_PER_CHAR
from tools.sim.street import REPO

FRAME = 252
"""Bytes of an update chunk's broadcast frame (240 bytes of image)."""
TURNAROUND = 0.1


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def measure(baud: int, drops: int, frames: int) -> dict[str, float]:
    """Run the bus, send ``frames`` frames, drain every drop; the figures."""
    with tempfile.TemporaryDirectory(prefix="frame-delivery-") as tmp:
        ports_path = Path(tmp) / "ports.json"
        proc = subprocess.Popen([sys.executable, "-m", "tools.sim.bus", "--drops", str(drops), "--ports",
                                 str(ports_path), "--paced", "--baud", str(baud)], cwd=REPO)
        sel = selectors.DefaultSelector()
        fds: list[int] = []
        try:
            deadline = time.monotonic() + 20
            while not ports_path.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the bus did not start")
                time.sleep(0.02)
            ports = json.loads(ports_path.read_text())
            for path in [ports["master"], *ports["drops"]]:
                fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
                tty.setraw(fd)
                os.set_blocking(fd, False)
                fds.append(fd)
            for fd in fds[1:]:
                sel.register(fd, selectors.EVENT_READ)
            reads = received = 0

            def drain(until: float) -> None:
                nonlocal reads, received
                while time.monotonic() < until and received < frames * FRAME * drops:
                    for key, _ in sel.select(0.01):
                        received += len(os.read(key.fd, 65536))
                        reads += 1

            cpu0, t0 = _cpu_seconds(proc.pid), time.monotonic()
            for k in range(frames):
                os.write(fds[0], bytes([k]) * FRAME)
                drain(time.monotonic() + FRAME * BITS_PER_CHAR / baud + TURNAROUND)
            drain(time.monotonic() + 2.0)
            cpu, wall = _cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
        finally:
            sel.close()
            for fd in fds:
                os.close(fd)
            proc.terminate()
            proc.wait()
    return {"reads_per_frame": reads / (frames * drops), "received": received, "sent": frames * FRAME * drops,
            "bus_cpu_s": cpu, "wall_s": wall}


def main(argv: list[str] | None = None) -> int:
    """Print the figures for one bit rate."""
    p = argparse.ArgumentParser(prog="python -m tools.bench.frame_delivery", description=__doc__.splitlines()[0])
    p.add_argument("--baud", type=int, default=19200)
    p.add_argument("--drops", type=int, default=35)
    p.add_argument("--frames", type=int, default=20)
    args = p.parse_args(argv)
    r = measure(args.baud, args.drops, args.frames)
    print(f"{args.baud} bit/s, {args.drops} drops, {args.frames} frames of {FRAME} bytes: "
          f"{r['reads_per_frame']:.1f} reads per drop per frame, {r['received']:.0f} of {r['sent']:.0f} bytes, "
          f"bus process CPU {r['bus_cpu_s']:.2f} s in {r['wall_s']:.1f} s, load average {os.getloadavg()[0]:.1f}")
    return 0 if r["received"] == r["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
