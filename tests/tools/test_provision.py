"""streetedge provision: a blank virtual board provisioned over its console with mpremote joins the street."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.service.config import NodeConfig
from tools.sim.console import start_console
from tools.sim.street import VirtualStreet

REPO = Path(__file__).resolve().parents[2]


class Bench:
    """A street of two lamp drops: unit 1 runs, unit 2 is a blank board (MicroPython only) on its console."""

    def __init__(self, street: VirtualStreet, manifest: dict[str, Any], console: subprocess.Popen[bytes],
                 link: Path, work: Path) -> None:
        self.street, self.manifest, self.console, self.link, self.work = street, manifest, console, link, work
        self.flash = street.nodes[2].flash
        self.bus = manifest["buses"][0]["device"]

    def provision(self, *extra: str, popen: bool = False) -> Any:
        argv = [sys.executable, "-m", "tools.cli", "provision", "--port", str(self.link), "--board", "sim",
                "--role", "lamp", "--node-id", "lamp-2", "--unit", "2", "--baud", "19200", "--bus", self.bus,
                "--record", str(self.work / "provisioned.jsonl"), "--workdir", str(self.work / "build"), *extra]
        if popen:
            return subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
        return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    work = tmp_path_factory.mktemp("provision")
    with VirtualStreet(work / "street", nodes=2) as street:
        manifest = street.start()
        street.kill_node(2)
        flash = street.nodes[2].flash
        shutil.rmtree(flash)  # a board fresh from `streetedge flash`: MicroPython, an empty filesystem
        wiring = {"uart": street.ports["drops"][1], "baud": street.baud, "seed": 2}
        console, link = start_console(flash, wiring)
        try:
            yield Bench(street, manifest, console, link, work)
        finally:
            console.terminate()
            console.wait(10)


def _mbpoll_uptime(bus: str) -> int:
    """Unit 2's uptime (input registers 9 and 10) read by mbpoll, an independent Modbus master."""
    done = subprocess.run(["mbpoll", "-m", "rtu", "-a", "2", "-b", "19200", "-P", "none", "-o", "1", "-1", "-0",
                           "-t", "3", "-r", "9", "-c", "2", bus], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    words = {int(r): int(v) for r, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", done.stdout, re.MULTILINE)}
    return words[9] << 16 | words[10]


def _diag(flash: Path) -> dict[str, Any]:
    """The node's diag.json, once it has written one (2 s after its boot)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return dict(json.loads((flash / "diag.json").read_text()))
        except (OSError, ValueError):
            assert time.monotonic() < deadline, "the node wrote no diag.json"
            time.sleep(0.2)


def test_a_blank_board_is_provisioned_and_joins_the_street(bench: Bench) -> None:
    assert not (bench.flash / "main.py").exists()
    done = bench.provision()
    assert done.returncode == 0, done.stderr
    assert "answers as unit 2" in done.stdout and "provisioned lamp-2" in done.stdout
    image = bench.work / "build" / "image-sim-lamp"
    manifest = json.loads((image / "manifest.json").read_text())
    # in the virtual board's ROM partition 0 (a chip's gets it by mpremote romfs deploy)
    assert (bench.flash / "rom" / "part0.bin").read_bytes() == (image / "rom.img").read_bytes()
    assert json.loads((bench.flash / "rom" / "state.json").read_text())["active"] == 0
    for name in ("main.py", "update_boot.py", "sim_rom.mpy"):
        assert (bench.flash / name).read_bytes() == (image / name).read_bytes(), name
    assert not (bench.flash / "firmware").exists()  # the code runs from the ROMFS image, not from files
    assert json.loads((bench.flash / "config.json").read_text()) == {"unit": 2, "role": "lamp", "baud": 19200}
    identity = json.loads((bench.flash / "identity.json").read_text())
    assert identity["node"] == "lamp-2" and identity["image"] == manifest["source_hash"]
    assert identity["rom"] == manifest["rom"]["sha256"]
    assert _diag(bench.flash)["rom_heap"] >= manifest["rom"]["bytes"]  # runs from the slot's image, counted apart
    assert _mbpoll_uptime(bench.bus) < 600  # an independent master sees the node running
    record = [json.loads(line) for line in (bench.work / "provisioned.jsonl").read_text().splitlines()]
    assert record[-1]["node"] == "lamp-2" and record[-1]["bus_checked"] is True


def test_provisioning_again_is_safe_and_an_interrupted_one_can_be_redone(bench: Bench) -> None:
    again = bench.provision()
    assert again.returncode == 0, again.stderr
    # interrupt a provisioning once it has removed main.py: the board is left at the REPL, provisionable
    proc = bench.provision(popen=True)
    deadline = time.monotonic() + 120
    while (bench.flash / "main.py").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (bench.flash / "main.py").exists()
    redone = bench.provision()
    assert redone.returncode == 0, redone.stderr
    assert (bench.flash / "main.py").exists() and _mbpoll_uptime(bench.bus) < 600


def test_the_record_gives_the_gateway_its_node_entries(bench: Bench) -> None:
    record = bench.work / "provisioned.jsonl"
    if not record.exists():
        record.write_text(json.dumps({"node": "lamp-2", "board": "sim", "role": "lamp", "image": "ab" * 32,
                                      "provisioned": "2026-12-06T10:00:00Z", "by": "x", "unit": 2}) + "\n")
    done = subprocess.run([sys.executable, "-m", "tools.cli", "provision", "--nodes-toml", "--record", str(record),
                           "--bus-name", "bus0"], cwd=REPO, capture_output=True, text=True, check=True)
    nodes = tomllib.loads(done.stdout)["node"]
    assert len(nodes) == 1  # the latest provisioning of each node
    assert msgspec.convert(nodes[0], NodeConfig) == NodeConfig(id="lamp-2", bus="bus0", unit=2, role="lamp")


@pytest.mark.parametrize(("args", "code", "words"), [
    (["--board", "sim", "--role", "lamp", "--node-id", "x", "--unit", "2", "--baud", "19200", "--no-bus-check"],
     2, "missing --port"),
    (["--port", "/dev/null", "--board", "sim", "--role", "lamp", "--node-id", "x", "--unit", "2", "--baud",
      "19200"], 2, "missing --bus (or --no-bus-check)"),
    (["--port", "/dev/streetedge-no-such-port", "--board", "sim", "--role", "lamp", "--node-id", "x", "--unit",
      "2", "--baud", "19200", "--no-bus-check"], 3, "no such device"),
    (["--port", "/dev/null", "--board", "nope", "--role", "lamp", "--node-id", "x", "--unit", "2", "--baud",
      "19200", "--no-bus-check"], 2, "unknown board 'nope'"),
    (["--port", "/dev/null", "--board", "esp32_lamp", "--role", "meter", "--node-id", "x", "--unit", "2",
      "--baud", "19200", "--no-bus-check"], 2, "carries lamp, not 'meter'"),
    (["--port", "/dev/null", "--board", "sim", "--role", "lamp", "--node-id", "bad name", "--unit", "2",
      "--baud", "19200", "--no-bus-check"], 2, "--node-id 'bad name'"),
    (["--port", "/dev/null", "--board", "sim", "--role", "lamp", "--node-id", "x", "--unit", "300",
      "--baud", "19200", "--no-bus-check"], 2, "--unit 300"),
    (["--port", "/dev/null", "--board", "sim", "--role", "lamp", "--node-id", "x", "--unit", "2",
      "--baud", "12345", "--no-bus-check"], 2, "--baud 12345"),
])
def test_bad_requests_end_in_one_line_and_touch_nothing(tmp_path: Path, args: list[str], code: int,
                                                        words: str) -> None:
    done = subprocess.run([sys.executable, "-m", "tools.cli", "provision", *args, "--record",
                           str(tmp_path / "r.jsonl"), "--workdir", str(tmp_path / "build")],
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == code, done.stderr
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_port_without_micropython_behind_it_is_said_in_one_line(tmp_path: Path) -> None:
    master, slave = pty.openpty()  # a serial line with nothing answering
    try:
        done = subprocess.run(
            [sys.executable, "-m", "tools.cli", "provision", "--port", os.ttyname(slave), "--board", "sim",
             "--role", "lamp", "--node-id", "x", "--unit", "2", "--baud", "19200", "--no-bus-check",
             "--connect-timeout", "3", "--record", str(tmp_path / "r.jsonl"), "--workdir", str(tmp_path / "build")],
            cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 3, done.stderr
    assert "cannot work with MicroPython there" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r.jsonl").exists()
