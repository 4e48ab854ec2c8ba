"""`streetedge run` as systemd runs it: a real process with NOTIFY_SOCKET, SIGHUP reloads, SIGTERM.

The nodes are Modbus TCP simulators in their own process; the broker is
Mosquitto; the test reads the daemon only from outside: its notify datagrams,
its HTTP endpoint and its JSON log lines.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tools.broker import free_port


@pytest.fixture
def tcp_lamps() -> Iterator[int]:
    """Three simulated lamps (units 1..3) on one Modbus TCP port, in their own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.sim.tcp_lamps", "--units", "3"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        yield json.loads(proc.stdout.readline())["ports"][0]
    finally:
        proc.terminate()
        proc.wait(10)


def write_config(path: Path, broker_url: str, lamp_port: int, http_port: int, units: int) -> None:
    nodes = "".join(
        f'[[node]]\nid = "lamp-{u}"\nbus = "lamps"\nunit = {u}\ninterval = 0.2\n' for u in range(1, units + 1)
    )
    path.write_text(
        f'site = "s"\ngateway = "g"\n[broker]\nurl = "{broker_url}"\nkeepalive = 10\n'
        f'[http]\nport = {http_port}\n[logging]\nlevel = "info"\n'
        f'[[bus]]\nname = "lamps"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {lamp_port}\n' + nodes
    )


def polls(http_port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {
        s.labels["node"]: s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "streetedge_node_polls_total"
    }


def until(what: str, condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"not reached in {within} s: {what}"
        time.sleep(0.05)


def test_notify_reload_and_stop(tmp_path: Path, mosquitto, tcp_lamps: int) -> None:
    """READY and watchdog pings; SIGHUP adds a node; a broken file is rejected; SIGTERM exits 0."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(30)
    http_port = free_port()
    config = tmp_path / "gateway.toml"
    write_config(config, mosquitto.url, tcp_lamps, http_port, units=2)
    log_path = tmp_path / "gateway.log"
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "400000"}
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "run", "-c", str(config), "--log-format", "json"],
            stderr=log_file, env=env,
        )
    seen: list[str] = []

    def wait_notify(prefix: str) -> str:
        while True:
            message = notify.recv(4096).decode()
            seen.append(message)
            if message.startswith(prefix):
                return message

    try:
        assert wait_notify("READY=1").startswith("READY=1\nSTATUS=s/g: 1 bus(es), 2 node(s)")
        wait_notify("WATCHDOG=1")
        until("both lamps polled", lambda: min(polls(http_port).values(), default=0) > 0)

        write_config(config, mosquitto.url, tcp_lamps, http_port, units=3)
        proc.send_signal(signal.SIGHUP)
        wait_notify("RELOADING=1")
        wait_notify("READY=1")
        until("the new lamp polled", lambda: polls(http_port).get("lamp-3", 0) > 0)

        config.write_text(config.read_text().replace("unit = 3", "unit = 300"))
        proc.send_signal(signal.SIGHUP)
        wait_notify("RELOADING=1")
        wait_notify("READY=1")
        before = polls(http_port)["lamp-3"]
        until("lamp-3 still polled after the rejected reload", lambda: polls(http_port)["lamp-3"] > before)
        assert proc.poll() is None

        proc.send_signal(signal.SIGTERM)
        wait_notify("STOPPING=1")
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        notify.close()
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, log_path.read_text()[-2000:]
    assert all({"ts", "level", "logger", "message"} <= line.keys() for line in lines)
    reloads = [line for line in lines if line.get("event") == "reload"]
    assert [r["accepted"] for r in reloads] == [True, False], reloads
    assert reloads[0]["changes"] == ["nodes of bus lamps changed"]
    assert "node[2].unit" in reloads[1]["message"]
    assert any(m.startswith("WATCHDOG=1") for m in seen)
