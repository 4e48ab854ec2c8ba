"""The Debian package on this machine: build, install, run as the unit does, upgrade with a backlog, purge.

Needs root (dpkg -i) and dpkg-deb. The installed daemon is started the way
``streetedge-gateway.service`` starts it (its ExecStart, User, Group,
SupplementaryGroups and WorkingDirectory, with a NOTIFY_SOCKET to hear READY=1),
not through systemctl: there is no systemd PID 1 here, and no service is left
behind. Everything is purged at the end, and the system user removed if this
test made it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.broker import LocalBroker, free_port, mosquitto_path
from tools.mqtt_watch import MqttWatch, Polls
from tools.sim.street import VirtualStreet
from tools.street_config import gateway_toml

REPO = Path(__file__).resolve().parents[2]
UNIT = Path("/lib/systemd/system/streetedge-gateway.service")
CONFIG = Path("/etc/streetedge/gateway.toml")
STATE = Path("/var/lib/streetedge")
SITE, GATEWAY = "pkg-site", "pkg-gw"
ROOT = f"streetedge/v1/{SITE}/{GATEWAY}"

pytestmark = [
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb is missing (Debian package 'dpkg')"),
    pytest.mark.timeout(1800),
]


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + 600
    while True:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
        # The host's package database is shared: another dpkg or apt run (an install elsewhere on the
        # machine) holds its lock for a while. dpkg refuses at once rather than wait: wait here instead.
        if not (cmd[0] == "dpkg" and "lock" in done.stderr and "locked by another process" in done.stderr):
            break
        assert time.monotonic() < deadline, f"{' '.join(cmd)}: the dpkg lock stayed taken for 600 s"
        time.sleep(2)
    assert not check or done.returncode == 0, f"{' '.join(cmd)}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def installed_version() -> str | None:
    done = run("dpkg-query", "-W", "-f=${Status} ${Version}", "streetedge", check=False)
    return done.stdout.split()[-1] if done.returncode == 0 and "installed" in done.stdout.split() else None


def unit_values(key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in UNIT.read_text().splitlines() if line.startswith(f"{key}=")]


class Daemon:
    """The installed gateway, started as the unit starts it; READY=1 and STOPPING=1 heard on a notify socket."""

    def __init__(self, folder: Path) -> None:
        self.socket_path = folder / "notify"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.socket_path))
        self.socket_path.chmod(0o777)  # the daemon's user sends to it
        self.log = folder / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        [exec_start], [user], [group] = unit_values("ExecStart"), unit_values("User"), unit_values("Group")
        groups = ",".join(unit_values("SupplementaryGroups"))
        [workdir] = unit_values("WorkingDirectory")
        command = ["setpriv", f"--reuid={user}", f"--regid={group}", f"--groups={groups}", "--",
                   *exec_start.split()]
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "NOTIFY_SOCKET": str(self.socket_path)}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.wait_for(b"READY=1")

    def wait_for(self, word: bytes, within: float = 120.0) -> None:
        deadline = time.monotonic() + within
        self.sock.settimeout(1.0)
        while time.monotonic() < deadline:
            assert self.proc is not None
            try:
                if word in self.sock.recv(4096).split(b"\n"):
                    return
            except TimeoutError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"daemon exited {self.proc.returncode}: {self.tail()}") from None
        raise AssertionError(f"no {word!r} within {within} s: {self.tail()}")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(60)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"no {name} in /metrics"
    return float(match.group(1))


def wait_until(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise AssertionError(f"{what} not within {within} s")


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two builds of this checkout: 0.1.0-1, and the newer 0.1.0-2."""
    out = tmp_path_factory.mktemp("deb")
    done = run(sys.executable, str(REPO / "packaging" / "build_deb.py"), "--out", str(out),
               "--revision", "1", "--revision", "2")
    return [Path(line) for line in done.stdout.splitlines()]


@pytest.fixture
def world() -> Iterator[Path]:
    """A folder the daemon's user can reach; afterwards: daemon killed, package purged, user removed if new."""
    if os.geteuid() != 0:
        pytest.fail("the package test installs with dpkg and needs root (CI runs as root)")
    assert installed_version() is None, "a streetedge package is installed here; the test would replace it"
    assert mosquitto_path(), "mosquitto is not installed: `make test` installs it from Debian"
    had_user = _user_exists()
    folder = Path(tempfile.mkdtemp(prefix="streetedge-pkg-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        if installed_version() is not None:
            run("dpkg", "--purge", "streetedge", check=False)
        if not had_user and _user_exists():
            run("deluser", "--system", "streetedge", check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _user_exists() -> bool:
    try:
        pwd.getpwnam("streetedge")
    except KeyError:
        return False
    return True


def test_install_run_upgrade_with_a_backlog_and_purge(debs: list[Path], world: Path) -> None:
    old, new = debs
    run("dpkg", "-i", str(old))
    assert installed_version() == "0.1.0-1"

    # What the package put in place.
    assert run("/usr/bin/streetedge", "--version").stdout.strip() == "streetedge 0.1.0"
    assert "dialout" in run("id", "-nG", "streetedge").stdout.split()
    assert pwd.getpwuid(STATE.stat().st_uid).pw_name == "streetedge"
    for doc in unit_values("Documentation"):
        assert Path(doc.removeprefix("file://")).is_file(), doc
    verify = run("systemd-analyze", "verify", str(UNIT), check=False)
    problems = [line for line in (verify.stdout + verify.stderr).splitlines() if UNIT.name in line]
    assert verify.returncode == 0 and problems == [], verify.stdout + verify.stderr

    daemon = Daemon(world)
    try:
        # The shipped configuration runs as it is (no adapter, no broker: reported and retried).
        daemon.start()
        assert daemon.stop() == 0, daemon.tail()

        with VirtualStreet(world / "street", nodes=2) as street:
            manifest = street.start()
            for bus in manifest["buses"]:  # a serial adapter's device: root:dialout 0660
                shutil.chown(bus["device"], group="dialout")
                Path(bus["device"]).chmod(0o660)
            broker = LocalBroker("mosquitto").start()
            http_port = free_port()
            CONFIG.write_text(
                gateway_toml(manifest, broker_url=broker.url, site=SITE, gateway=GATEWAY)
                + f'\n[delivery]\noutbox = "{STATE / "outbox.db"}"\nbatch_interval = 1.0\n'
                + f"\n[http]\nport = {http_port}\n"
            )
            edited = CONFIG.read_bytes()
            try:
                with MqttWatch(broker.host, broker.port, f"{ROOT}/#") as watch:
                    daemon.start()
                    Polls(watch, ROOT).wait("lamp-1", within=120)
                # The broker goes away: polls wait in the outbox.
                broker.stop()
                down = time.time()
                wait_until(lambda: metric(http_port, "streetedge_outbox_depth") >= 5, 120, "a backlog of 5 polls")
                assert daemon.stop() == 0, daemon.tail()
                stopped = time.time()

                run("dpkg", "-i", "--force-confold", str(new))
                assert installed_version() == "0.1.0-2"
                assert CONFIG.read_bytes() == edited  # the operator's configuration survives the upgrade
                assert (STATE / "outbox.db").stat().st_size > 0

                broker = LocalBroker("mosquitto", port=broker.port).start()
                with MqttWatch(broker.host, broker.port, f"{ROOT}/#") as watch:
                    daemon.start()
                    backlog = Polls(watch, ROOT).wait(
                        "lamp-1", lambda poll: down <= min(r["t"] for r in poll.values()) < stopped, within=300,
                    )
                    assert backlog["dim_level"]["v"] is not None
                assert daemon.stop() == 0, daemon.tail()
            finally:
                broker.stop()
    finally:
        daemon.kill()

    run("dpkg", "--purge", "streetedge")
    assert installed_version() is None
    for gone in (Path("/opt/streetedge"), Path("/usr/bin/streetedge"), UNIT, CONFIG.parent, STATE):
        assert not gone.exists() and not gone.is_symlink(), gone
