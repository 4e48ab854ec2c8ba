"""streetedge watch against a gateway on the virtual street, in a real terminal (tmux), its screen read back."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.broker import LocalBroker
from tools.keys import trust
from tools.operator import Signer, send_command
from tools.sim.street import VirtualStreet
from tools.street_config import write_gateway_toml

REPO = Path(__file__).resolve().parents[2]
SITE, GATEWAY = "watch-site", "watch-gw"


class Terminal:
    """One tmux session on a private server (its own socket name), 200 x 60."""

    def __init__(self, name: str, command: list[str]) -> None:
        self.tmux = shutil.which("tmux")
        assert self.tmux, "tmux is not installed (Debian package 'tmux')"
        self.name = name
        subprocess.run([self.tmux, "-L", name, "new-session", "-d", "-x", "200", "-y", "60",
                        "-e", "COLUMNS=200", "-e", "LINES=60", " ".join(command)], check=True, cwd=REPO)
        # No client is attached: pin the size, or tmux may shrink the window to its default.
        subprocess.run([self.tmux, "-L", name, "resize-window", "-x", "200", "-y", "60"], check=True)

    def screen(self) -> str:
        done = subprocess.run([self.tmux or "tmux", "-L", self.name, "capture-pane", "-p"], capture_output=True,
                              text=True, check=False)
        return done.stdout

    def wait(self, ok: Callable[[str], bool], within: float = 90.0) -> str:
        deadline = time.monotonic() + within
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if ok(screen):
                return screen
            time.sleep(0.5)
        raise AssertionError(f"screen never matched within {within} s:\n{screen}")

    def close(self) -> None:
        subprocess.run([self.tmux or "tmux", "-L", self.name, "kill-server"], check=False, capture_output=True)


@pytest.fixture
def gateway(tmp_path: Path, mosquitto: LocalBroker) -> Iterator[tuple[LocalBroker, Signer, VirtualStreet]]:
    """Two lamps on the virtual street, a phantom lamp (unit 9) that never answers, the gateway as a process."""
    with VirtualStreet(tmp_path / "street", nodes=2) as street:
        manifest = street.start()
        manifest["nodes"].append({**manifest["nodes"][0], "id": "lamp-9", "unit": 9})
        config = write_gateway_toml(tmp_path / "gateway.toml", manifest, broker_url=mosquitto.url, site=SITE,
                                    gateway=GATEWAY)
        config.write_text(config.read_text() + "\n[delivery]\nbatch_interval = 1.0\n[http]\nport = 0\n")
        signer = Signer(Ed25519PrivateKey.generate(), "ops")
        trust(config, tmp_path, signer.kid, signer.key)
        with (tmp_path / "gateway.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "-c", str(config)], cwd=REPO,
                                    stdout=log, stderr=subprocess.STDOUT)
        try:
            yield mosquitto, signer, street
        finally:
            proc.terminate()
            proc.wait(60)


def test_watch_shows_the_street_states_values_results_and_delivery(
    gateway: tuple[LocalBroker, Signer, VirtualStreet], tmp_path: Path
) -> None:
    broker, signer, _ = gateway
    terminal = Terminal(f"streetedge-watch-{tmp_path.name}", [
        sys.executable, "-m", "tools.cli", "watch", "--broker", broker.url, "--site", SITE, "--gateway", GATEWAY,
    ])
    try:
        screen = terminal.wait(lambda s: "lamp-1" in s and "lamp-2" in s and "dim_level=" in s
                               and "gateway online" in s and "delivery: stored" in s)
        assert f"{SITE}/{GATEWAY}" in screen and "connected" in screen
        # The phantom node: its death message, with the reason, once 3 polls in a row failed.
        terminal.wait(lambda s: any("lamp-9" in line and "OFFLINE" in line and "unit 9" in line
                                    for line in s.splitlines()))
        # A command and its result.
        result = asyncio.run(send_command(broker=broker.url, site=SITE, gateway=GATEWAY, signer=signer,
                                          target="lamp-1", action="dim", params={"level": 40}, wait=60))
        assert result["status"] == "done", result
        terminal.wait(lambda s: any(str(result["id"]) in line and "done" in line for line in s.splitlines()))
        lamp = next(line for line in terminal.wait(
            lambda s: any("lamp-1" in line and "dim_level=40" in line for line in s.splitlines())
        ).splitlines() if "lamp-1" in line and "dim_level=" in line)
        assert "online" in lamp
    finally:
        terminal.close()


def test_plain_watch_prints_one_line_per_message_and_stops_on_time(mosquitto: LocalBroker) -> None:
    """--plain reads retained state and node deaths as they are; --seconds ends it with exit 0."""
    import cbor2

    from tools.mqtt_watch import MqttWatch

    root = f"streetedge/v1/{SITE}/{GATEWAY}"
    with MqttWatch(mosquitto.host, mosquitto.port, f"{root}/#") as publisher:
        publisher.publish(f"{root}/state", cbor2.dumps({"online": True, "session": 7, "ts": 1.0}), retain=True)
        publisher.publish(f"{root}/node/lamp-3/state",
                          cbor2.dumps({"online": False, "ts": 2.0, "error": "unit 3 on bus0: no answer"}), retain=True)
        publisher.publish(f"{root}/delivery", b"\xa1\x01", retain=True)  # truncated CBOR: said, and the watch goes on
    proc = subprocess.run([sys.executable, "-m", "tools.cli", "watch", "--plain", "--seconds", "4", "--broker",
                           mosquitto.url, "--site", SITE, "--gateway", GATEWAY], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "gateway online (session 7)" in lines
    assert "node lamp-3 OFFLINE: unit 3 on bus0: no answer" in lines
    assert any(line.startswith(f"{root}/delivery: cannot decode") for line in lines), lines
