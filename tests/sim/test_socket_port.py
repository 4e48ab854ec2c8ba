"""The lamp host's socket link with line times (``tools/sim/micropython/socket_port.py``), on MicroPython."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from tools.sim.street import micropython_path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import asyncio, socket, struct
    from socket_port import SocketPort

    async def main():
        bus = socket.socket(socket.AF_UNIX, 5)  # SOCK_SEQPACKET, as tools.sim.bus --line-times listens
        bus.bind(struct.pack("H", socket.AF_UNIX) + b"\\0streetedge-socket-port-test-%d")
        bus.listen(1)
        port = SocketPort("@streetedge-socket-port-test-%d", 115200, line_times=True)
        drop, _ = bus.accept()
        # Two deliveries queued before the host reads: each must come out alone, with its own line time.
        drop.write(struct.pack("<q", 1000001) + b"\\x25\\x03\\x00\\x06\\x00\\x01\\x62\\xef")
        drop.write(struct.pack("<q", 1000002) + b"\\x25\\x03\\x00\\x64\\x00\\x02\\x83\\x30")
        drop.write(struct.pack("<q", 1000003))  # a bare line time: nothing to read
        drop.write(struct.pack("<q", 1000004) + b"\\x07")
        buf = bytearray(256)
        for _ in range(3):
            n = await port.stream.readinto(buf)
            print(bytes(buf[:n]).hex(), port.stream.line_end)
        await port.send(b"\\x25\\x03\\x02\\x00\\x01", 5)
        msg = drop.recv(64)
        print(msg[8:].hex(), struct.unpack("<q", msg[:8])[0] > 0)

    asyncio.run(main())
""")


def test_each_delivery_is_read_alone_with_its_line_time(tmp_path: Path) -> None:
    """Messages queued together are not joined (a joined read took the next line time for bytes)."""
    script = tmp_path / "link.py"
    script.write_text(SCRIPT % (os.getpid(), os.getpid()))
    env = {**os.environ, "MICROPYPATH": f".frozen:{REPO / 'tools' / 'sim' / 'micropython'}:{REPO}"}
    run = subprocess.run([micropython_path(), str(script)], env=env, capture_output=True, text=True, timeout=30,
                         check=False, cwd=REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.splitlines() == [
        "25030006000162ef 1000001",
        "2503006400028330 1000002",
        "07 1000004",
        "2503020001 True",  # an answer goes out as one message, with the time the host wrote it
    ]
