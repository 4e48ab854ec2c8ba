"""sd_notify over a real unix datagram socket, the watchdog period, and the unit file."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
from pathlib import Path

from gateway.service.systemd import Notifier, keep_alive, watchdog_interval

UNIT = Path(__file__).resolve().parents[3] / "packaging" / "systemd" / "streetedge-gateway.service"


def listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    return sock


def test_ready_status_stopping_reach_the_socket(tmp_path: Path) -> None:
    """Each call sends one datagram of KEY=value lines."""
    with listener(tmp_path / "notify") as sock:
        notifier = Notifier(str(tmp_path / "notify"))
        assert notifier.enabled
        assert notifier.ready("2 buses")
        assert sock.recv(4096) == b"READY=1\nSTATUS=2 buses"
        assert notifier.reloading()
        lines = sock.recv(4096).decode().split("\n")
        assert lines[0] == "RELOADING=1" and lines[1].startswith("MONOTONIC_USEC=")
        assert notifier.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        notifier.close()


def test_abstract_socket_address() -> None:
    """An address starting with @ is in the abstract namespace."""
    name = f"streetedge-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        notifier = Notifier("@" + name)
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        notifier.close()


def test_without_a_manager_nothing_happens(tmp_path: Path) -> None:
    """No NOTIFY_SOCKET: calls return False; a vanished socket is logged, not raised."""
    assert not Notifier("").ready()
    assert not Notifier(str(tmp_path / "gone")).ready()


def test_watchdog_interval_is_half_the_period() -> None:
    """WATCHDOG_USEC=30 s -> ping every 15 s; another process's watchdog is not ours."""
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "x"}) is None


def test_keep_alive_pings_while_healthy(tmp_path: Path) -> None:
    """keep_alive sends WATCHDOG=1 at its interval, and stops pinging when unhealthy."""
    healthy = [True]

    async def main(sock: socket.socket) -> None:
        notifier = Notifier(str(tmp_path / "notify"))
        task = asyncio.create_task(keep_alive(notifier, 0.02, lambda: healthy[0]))
        first = await asyncio.to_thread(sock.recv, 4096)
        second = await asyncio.to_thread(sock.recv, 4096)
        assert first == second == b"WATCHDOG=1"
        healthy[0] = False
        await asyncio.sleep(0.1)
        sock.setblocking(False)
        while True:  # drain pings sent before the switch
            try:
                sock.recv(4096)
            except BlockingIOError:
                break
        await asyncio.sleep(0.1)
        try:
            late = sock.recv(4096)
        except BlockingIOError:
            late = b""
        assert late == b""
        task.cancel()
        notifier.close()

    with listener(tmp_path / "notify") as sock:
        asyncio.run(main(sock))


def test_unit_file_verifies(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit (with ExecStart pointing at an existing program)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is not installed (Debian package 'systemd')"
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text and "ExecReload=/bin/kill -HUP $MAINPID" in text
    unit = tmp_path / "streetedge-gateway.service"
    unit.write_text(text.replace("/usr/bin/streetedge", shutil.which("true") or "/bin/true"))
    result = subprocess.run([analyze, "verify", str(unit)], check=False, capture_output=True, text=True, timeout=60)
    problems = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    assert problems == [], problems
