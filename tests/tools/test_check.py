"""streetedge check: a configuration and the machine it needs, checked without starting or creating anything."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.service.config import load_config
from tools.broker import LocalBroker, free_port
from tools.check import file_findings

REPO = Path(__file__).resolve().parents[2]


def streetedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=REPO)


@pytest.fixture
def pty_device() -> Iterator[str]:
    """A real terminal device (the slave side of a pty), as a serial adapter would be."""
    master, slave = os.openpty()
    try:
        yield os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def _toml(folder: Path, broker: str, device: str, *, more_buses: str = "") -> Path:
    config = folder / "gateway.toml"
    config.write_text(
        f'site = "s"\ngateway = "g"\n[broker]\nurl = "{broker}"\n'
        f'[delivery]\noutbox = "{folder / "state" / "outbox.db"}"\n'
        f'[[bus]]\nname = "bus0"\ndevice = "{device}"\nparity = "N"\n{more_buses}'
        '[[node]]\nid = "lamp-1"\nbus = "bus0"\nunit = 1\n'
    )
    return config


def test_a_ready_machine_passes_every_check(tmp_path: Path, mosquitto: LocalBroker, pty_device: str) -> None:
    (tmp_path / "state").mkdir()
    config = _toml(tmp_path, mosquitto.url, pty_device)
    proc = streetedge("check", "-c", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"ok    bus[0] bus0: device {pty_device}" in proc.stdout
    assert f"ok    broker {mosquitto.url}" in proc.stdout
    assert proc.stdout.rstrip().endswith("all checks passed")
    assert not (tmp_path / "state" / "outbox.db").exists()  # checked, not created


def test_each_problem_is_one_line_and_the_exit_code_is_1(tmp_path: Path, pty_device: str) -> None:
    dead_broker, dead_modbus = free_port(), free_port()
    config = _toml(tmp_path, f"mqtt://127.0.0.1:{dead_broker}", "/dev/ttyUSB-nonexistent", more_buses=(
        f'[[bus]]\nname = "meters"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {dead_modbus}\n'))
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = streetedge("check", "-c", str(config), "--timeout", "2")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    fails = [line for line in proc.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 4, proc.stdout
    assert f"delivery.outbox {tmp_path}/state/outbox.db: directory {tmp_path}/state does not exist" in fails[0]
    assert "bus[0] bus0: device /dev/ttyUSB-nonexistent: it does not exist" in fails[1]
    assert f"Modbus TCP 127.0.0.1:{dead_modbus}: cannot connect" in fails[2]
    assert f"broker mqtt://127.0.0.1:{dead_broker}: cannot connect" in fails[3] and "refused" in fails[3]
    assert proc.stderr.strip() == "4 problem(s) found"
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_configuration_that_does_not_load_is_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('site = "s"\ngateway = "g"\n[[node]]\nid = "lamp-1"\nbus = "bus9"\nunit = 1\n')
    proc = streetedge("check", "-c", str(config))
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"streetedge check: {config}: node[0].bus: unknown bus 'bus9' "
                                                "(declared: none)"]


def as_user(name: str, job: Callable[[], list[str]]) -> list[str]:
    """``job`` run in a forked child with the uid, gid and no supplementary groups of user ``name``."""
    account = pwd.getpwnam(name)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, do the job, report, leave without cleanup
        code = 1
        try:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            os.write(write, json.dumps(job()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0, "the job failed in the child"
    found: list[str] = json.loads(data)
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="checking as another user needs root")
def test_permissions_are_checked_for_the_user_who_runs_it(tmp_path: Path, pty_device: str) -> None:
    """As a user outside the device's group: the group to join is named; a state directory it cannot write too."""
    shutil.chown(pty_device, group="dialout")  # as udev leaves a USB serial adapter: root:dialout 0660
    Path(pty_device).chmod(0o660)
    (tmp_path / "state").mkdir()
    config = load_config(_toml(tmp_path, "mqtt://127.0.0.1:1", pty_device))
    found = as_user("nobody", lambda: [f"{what}: {problem}" for what, problem in file_findings(config) if problem])
    assert len(found) == 2, found
    assert found[0].startswith(f"delivery.outbox {tmp_path}/state/outbox.db: ")  # tmp_path is root's, mode 0700
    assert found[1] == (f"bus[0] bus0: device {pty_device}: no permission to read and write it as user nobody "
                        "(it belongs to group dialout): add the user to that group (usermod -aG dialout USER); the "
                        "packaged unit runs with SupplementaryGroups=dialout")
