"""Provisioning: a blank board provisioned by ``streetedge provision`` joins the street, and the gateway polls it.

On the virtual street: a line of two lamp drops, lamp 1 running, drop 2 a board
fresh from ``streetedge flash`` (MicroPython, an empty filesystem) on its USB
console (``tools.sim.console``, the unix port's raw REPL on a pty).
``streetedge provision`` (a separate process, as a field engineer runs it) puts
the image and identity on it over that console and waits for its first answer
on the bus; the gateway's ``[[node]]`` entry comes from the provisioning record
(``streetedge provision --nodes-toml``); then the gateway daemon polls both
lamps and an independent MQTT observer sees the new node's data.

On a real bench (``--bench FILE``) the file adds ``"provision"``:
``{"port": console device, "board": B, "role": R, "node_id": ID, "unit": N}``,
a board on the bench's first line, already flashed with MicroPython.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hil_tests.conftest import Daemon
from tools.broker import LocalBroker
from tools.mqtt_watch import MqttWatch, Polls
from tools.sim.console import start_console
from tools.sim.street import REPO, VirtualStreet
from tools.street_config import write_gateway_toml

SITE, GATEWAY = "hil-site", "gw-provision"
ROOT = f"streetedge/v1/{SITE}/{GATEWAY}"


@dataclass
class Blank:
    """A board to provision: its console, the request, the line it joins and the nodes already there."""

    port: str
    board: str
    role: str
    node_id: str
    unit: int
    manifest: dict[str, Any]
    """The line (``buses[0]``) and its nodes running already (the new one not among them)."""
    flash: Path | None
    """The virtual board's filesystem (None on a real bench)."""


@pytest.fixture(scope="module")
def blank(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Blank]:
    path = request.config.getoption("--bench")
    if path:
        spec = json.loads(Path(path).read_text())
        p = spec["provision"]
        line = spec["buses"][0]
        nodes = [n for n in spec["nodes"] if n["bus"] == line["name"] and n["id"] != p["node_id"]]
        yield Blank(p["port"], p["board"], p["role"], p["node_id"], p["unit"],
                    {"buses": [line], "nodes": nodes}, None)
        return
    work = tmp_path_factory.mktemp("provision")
    with VirtualStreet(work / "street", nodes=2) as street:
        manifest = street.start()
        street.kill_node(2)
        flash = street.nodes[2].flash
        shutil.rmtree(flash)  # MicroPython and an empty filesystem: what `streetedge flash` leaves
        console, link = start_console(flash, {"uart": street.ports["drops"][1], "baud": street.baud, "seed": 2})
        try:
            running = {"buses": manifest["buses"], "nodes": [n for n in manifest["nodes"] if n["unit"] == 1]}
            yield Blank(str(link), "sim", "lamp", "lamp-2", 2, running, flash)
        finally:
            console.terminate()
            console.wait(10)


def test_a_blank_board_provisioned_joins_the_street_and_is_polled(
        blank: Blank, broker: LocalBroker, tmp_path: Path) -> None:
    """Provisioned, answering on its bus, entered from the record, polled by the gateway, seen upstream."""
    if blank.flash is not None:
        assert not (blank.flash / "main.py").exists()
    line = blank.manifest["buses"][0]
    record = tmp_path / "provisioned.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "tools.cli", "provision", "--port", blank.port, "--board", blank.board, "--role",
         blank.role, "--node-id", blank.node_id, "--unit", str(blank.unit), "--baud", str(line["baud"]),
         "--bus", line["device"], "--record", str(record), "--workdir", str(tmp_path / "build")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"answers as unit {blank.unit}" in done.stdout and f"provisioned {blank.node_id}" in done.stdout
    entries = subprocess.run(
        [sys.executable, "-m", "tools.cli", "provision", "--nodes-toml", "--record", str(record), "--bus-name",
         line["name"]], cwd=REPO, capture_output=True, text=True, timeout=60, check=True).stdout
    assert f'id = "{blank.node_id}"' in entries
    config = write_gateway_toml(tmp_path / "gateway.toml", blank.manifest, broker_url=broker.url,
                                protocol=broker.protocol, site=SITE, gateway=GATEWAY, interval=0.5)
    config.write_text(config.read_text() + "\n" + entries + f'[delivery]\noutbox = "{tmp_path / "outbox.db"}"\n'
                      "batch_interval = 0.5\n")
    daemon = Daemon(config, tmp_path / "gateway.log")
    with MqttWatch(broker.host, broker.port, ROOT + "/#") as watch:
        daemon.start()
        try:
            polls = Polls(watch, ROOT)
            poll = polls.wait(blank.node_id, lambda p: "uptime" in p, within=60)
            assert poll["uptime"]["v"] >= 0
            for node in blank.manifest["nodes"]:  # the line's other nodes are polled as before
                polls.wait(node["id"], within=30)
            assert daemon.alive(), daemon.log_tail()
        finally:
            daemon.stop()
