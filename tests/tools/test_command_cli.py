"""streetedge keys new / audit verify / cmd --help, as a field engineer runs them."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.commands.audit import AuditLog
from gateway.service.config_commands import public_key_bytes
from gateway.update.package import make_package
from tools.exit_codes import CliError
from tools.keys import load_private_key, public_text
from tools.update_command import update_params


def streetedge(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_keys_new_writes_a_private_key_for_its_owner_and_prints_the_entry(tmp_path: Path) -> None:
    """The private key is 0600 PEM, the public line matches it, the printed [[key]] entry is usable."""
    proc = streetedge("keys", "new", "maint-elm", "--dir", str(tmp_path), "--targets", "group:elm")
    assert proc.returncode == 0, proc.stderr
    key = load_private_key(tmp_path / "maint-elm.key")
    assert (tmp_path / "maint-elm.key").stat().st_mode & 0o777 == 0o600
    public = (tmp_path / "maint-elm.pub").read_text().strip()
    assert public == public_text(key)
    Ed25519PublicKey.from_public_bytes(public_key_bytes(public))
    assert f'public = "{public}"' in proc.stdout and 'targets = ["group:elm"]' in proc.stdout
    again = streetedge("keys", "new", "maint-elm", "--dir", str(tmp_path))
    assert again.returncode == 2 and "not overwriting" in again.stderr


def test_audit_verify_reports_intact_and_broken(tmp_path: Path) -> None:
    """Exit 0 and the count for an intact chain; exit 1 and the line for an edited one."""
    path = tmp_path / "audit.jsonl"
    log = AuditLog(path, clock=lambda: 1.8e9)
    for i in range(3):
        log.append("refused", id=f"c-{i}", reason="not_signed")
    log.close()
    ok = streetedge("audit", "verify", str(path))
    assert ok.returncode == 0 and "3 entries, chain intact" in ok.stdout
    path.write_text(path.read_text().replace('"c-1"', '"c-9"'))
    bad = streetedge("audit", "verify", str(path))
    assert bad.returncode == 1 and "BROKEN at line 2" in bad.stdout


def test_cmd_needs_a_key() -> None:
    """streetedge cmd refuses to run without a signing key."""
    proc = streetedge("cmd", "dim", "--target", "all", "--site", "s", "--gateway", "g")
    assert proc.returncode == 2 and "--key" in proc.stderr


def test_cmd_builds_the_parameters_of_each_action_from_its_flags(tmp_path: Path, mosquitto) -> None:
    """Flags and @FILE parameters become the signed command's params; no gateway answers, so: timeout, exit 1."""
    import json

    import cbor2

    from gateway.commands import cose
    from tools.mqtt_watch import MqttWatch

    assert streetedge("keys", "new", "ops", "--dir", str(tmp_path)).returncode == 0
    schedule = {"programs": {"0": [[2, 0, 100], [1, 0, 0]]}, "calendar": {"default": 0}}
    (tmp_path / "night.json").write_text(json.dumps(schedule))
    cases = [
        (["override", "--level", "70", "--minutes", "15"], {"level": 70, "minutes": 15}),
        (["set_unit", "--unit", "42"], {"unit": 42}),
        (["reboot", "--within", "30"], {"within": 30}),
        (["set_schedule", "--params", f"@{tmp_path / 'night.json'}"], schedule),
        (["set_config", "--params", '{"mode": 1}'], {"mode": 1}),
        (["cancel_update", "--rollout", "up-7"], {"rollout": "up-7"}),
    ]
    with MqttWatch(mosquitto.host, mosquitto.port, "streetedge/v1/s/g/cmd") as watch:
        for flags, params in cases:
            mark = watch.mark()
            proc = streetedge("cmd", *flags, "--target", "lamp-1", "--key", str(tmp_path / "ops.key"),
                              "--broker", mosquitto.url, "--site", "s", "--gateway", "g", "--timeout", "0.5")
            assert proc.returncode == 1 and '"status": "timeout"' in proc.stdout, proc.stderr
            command = cbor2.loads(cose.decode_sign1(watch.wait_for(lambda m: True, after=mark).payload).payload)
            assert (command["action"], command["params"]) == (flags[0], params)



def test_cmd_update_states_package_canary_and_stop_or_sends_nothing(tmp_path: Path) -> None:
    """Each of the three update options is required; a package file is named by its image's hash."""
    package = make_package(b"image bytes", key=b"k", role="lamp", board="sim")
    (tmp_path / "lamp.update").write_bytes(package.to_bytes())
    (tmp_path / "junk.update").write_bytes(b"not a package")
    given = {"package": str(tmp_path / "lamp.update"), "canary": "lamp-1,group:c", "stop_on_failure": "no"}
    assert update_params(argparse.Namespace(**given), {}) == {
        "package": package.digest.hex(), "canary": ["lamp-1", "group:c"], "stop_on_failure": False}
    assert update_params(argparse.Namespace(**{**given, "package": "AB" * 32, "canary": "none"}), {})[
        "canary"] == []
    for missing, words in (("package", "update needs --package FILE|SHA256"),
                           ("canary", "update needs --canary NODES|none"),
                           ("stop_on_failure", "update needs --stop-on-failure yes|no")):
        with pytest.raises(CliError, match="nothing sent") as exc:
            update_params(argparse.Namespace(**{**given, missing: None}), {})
        assert words in str(exc.value)
    with pytest.raises(CliError, match="not an update package"):
        update_params(argparse.Namespace(**{**given, "package": str(tmp_path / "junk.update")}), {})
    # the command line says it in one line and exits 2, before any broker is reached
    assert streetedge("keys", "new", "ops", "--dir", str(tmp_path)).returncode == 0
    proc = streetedge("cmd", "update", "--target", "all", "--key", str(tmp_path / "ops.key"), "--site", "s",
                      "--gateway", "g", "--broker", "mqtt://127.0.0.1:1", "--package", "ab" * 32,
                      "--stop-on-failure", "yes")
    assert proc.returncode == 2 and "update needs --canary NODES|none; nothing sent" in proc.stderr, proc.stderr
    proc = streetedge("cmd", "cancel_update", "--target", "all", "--key", str(tmp_path / "ops.key"), "--site", "s",
                      "--gateway", "g", "--broker", "mqtt://127.0.0.1:1")
    assert proc.returncode == 2 and "cancel_update needs --rollout ID" in proc.stderr, proc.stderr
