"""The bench under test: the virtual street by default, or a real bench described by a file.

``pytest hil_tests`` starts a virtual street of lamp nodes (the real firmware
in the MicroPython unix port). ``pytest hil_tests --bench bench.json`` runs the
same tests against real hardware instead: the file has the virtual street's
manifest format (buses with their serial device and baud, nodes with id, unit,
role and bus). Either way the tests see a Mosquitto broker of their own, the
real gateway daemon (``streetedge run``) as a separate process, and an
independent MQTT observer (paho).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.broker import LocalBroker, mosquitto_path
from tools.keys import commands_toml, key_entry, public_text
from tools.mqtt_watch import MqttWatch
from tools.operator import Signer
from tools.sim.street import VirtualStreet
from tools.street_config import write_gateway_toml

SITE = "hil-site"
GATEWAY = "gw-hil"
ROOT_TOPIC = f"streetedge/v1/{SITE}/{GATEWAY}"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--bench", default=None, help="bench description (manifest JSON) of real hardware")
    parser.addoption("--bench-nodes", type=int, default=4, help="lamp nodes on the virtual street")


class Bench:
    """What a test may ask of the bench, virtual or real."""

    def __init__(self, manifest: dict[str, Any], street: VirtualStreet | None) -> None:
        self.manifest = manifest
        self.street = street
        self.node_ids = [n["id"] for n in manifest["nodes"]]

    @property
    def virtual(self) -> bool:
        """True on the virtual street, where the physical world can be read directly."""
        return self.street is not None

    def world(self, node_id: str) -> dict[str, Any]:
        """The physical state of a virtual lamp (its ``world.json``)."""
        assert self.street is not None, "the physical world is only readable on the virtual street"
        unit = next(n["unit"] for n in self.manifest["nodes"] if n["id"] == node_id)
        data: dict[str, Any] = json.loads((self.street.node(unit).flash / "world.json").read_text())
        return data


@pytest.fixture(scope="session")
def bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    """The street under test, started once per session."""
    path = request.config.getoption("--bench")
    if path:
        yield Bench(json.loads(Path(path).read_text()), None)
        return
    nodes = request.config.getoption("--bench-nodes")
    heap = os.environ.get("STREETEDGE_NODE_HEAP", "128K")  # the ESP32's budget (docs/performance.md, "bench node")
    with VirtualStreet(tmp_path_factory.mktemp("street"), nodes=nodes, heapsize=heap) as street:
        yield Bench(street.start(), street)


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """A Mosquitto broker of the session's own."""
    assert mosquitto_path(), "mosquitto is not installed: `make test` installs it from Debian"
    with LocalBroker("mosquitto") as b:
        yield b


class Daemon:
    """The gateway as a separate process, exactly as systemd would run it."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "run", "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


class Operators:
    """The session's operator keys: ``ops`` may do everything; ``maint`` may dim and switch group:half."""

    def __init__(self) -> None:
        self.ops = Signer(Ed25519PrivateKey.generate(), "ops")
        self.maint = Signer(Ed25519PrivateKey.generate(), "maint")

    def toml(self, state: Path) -> str:
        """The [commands] and [[key]] lines that make the gateway trust both keys."""
        return (commands_toml(state) + key_entry("ops", public_text(self.ops.key), ["*"], ["*"])
                + key_entry("maint", public_text(self.maint.key), ["dim", "switch"], ["group:half"]))


@pytest.fixture(scope="session")
def operators() -> Operators:
    """Operator keys made for this session and trusted by its gateway."""
    return Operators()


@pytest.fixture(scope="session")
def gateway(
    bench: Bench, broker: LocalBroker, operators: Operators, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    """``streetedge run`` attached to the bench and the broker; stopped with SIGTERM at the end."""
    folder = tmp_path_factory.mktemp("gateway")
    ids = bench.node_ids
    config = write_gateway_toml(
        folder / "gateway.toml", bench.manifest, broker_url=broker.url, protocol=broker.protocol,
        site=SITE, gateway=GATEWAY, interval=0.5, groups={"half": ids[: len(ids) // 2]},
    )
    # The default (compact) profile, its batches as frequent as the polls: data shows up as soon as per poll.
    delivery = "[delivery]\nbatch_interval = 0.5\n"
    config.write_text(config.read_text() + "\n" + operators.toml(folder) + "\n" + delivery)
    daemon = Daemon(config, folder / "gateway.log")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def watch(broker: LocalBroker, gateway: Daemon) -> Iterator[MqttWatch]:
    """An independent observer of everything under the gateway's topic root."""
    with MqttWatch(broker.host, broker.port, ROOT_TOPIC + "/#") as w:
        yield w
    assert gateway.alive(), f"the gateway died during the test:\n{gateway.log_tail()}"


def wait_until(check: Any, within: float = 15.0, every: float = 0.2) -> Any:
    """Call ``check()`` until it returns a truthy value, at most ``within`` seconds; return that value."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"condition not met within {within} s"
        time.sleep(every)


@pytest.fixture
def until() -> Any:
    """``until(check, within=15.0)``: poll ``check()`` until truthy; fail after ``within`` seconds."""
    return wait_until
