"""Every way a new operator got a traceback or an unsafe default: one line, a documented exit code, nothing changed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.broker import LocalBroker, free_port
from tools.exit_codes import Exit
from tools.keys import new_key
from tools.mqtt_watch import MqttWatch

REPO = Path(__file__).resolve().parents[2]
SITE, GATEWAY = "s1", "gw1"
ROOT = f"streetedge/v1/{SITE}/{GATEWAY}"


def streetedge(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=cwd)


def one_line_error(proc: subprocess.CompletedProcess[str], code: Exit, *needles: str) -> str:
    """The single line on standard error, checked: exit code, no traceback, every needle in it."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def tree(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its content (None for a directory)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


@pytest.fixture
def watched(mosquitto: LocalBroker) -> Iterator[tuple[LocalBroker, MqttWatch]]:
    with MqttWatch(mosquitto.host, mosquitto.port, f"{ROOT}/#") as watch:
        yield mosquitto, watch


def assert_nothing_sent(watch: MqttWatch) -> None:
    """A marker published after the command arrives alone: the command published nothing before it."""
    watch.publish(f"{ROOT}/marker", b"end")
    watch.wait_for(lambda m: m.topic.endswith("/marker"))
    assert [m.topic for m in watch.snapshot()] == [f"{ROOT}/marker"]


def cmd_args(broker: str, key: Path, *extra: str) -> list[str]:
    return ["cmd", *extra, "--target", "lamp-1", "--key", str(key), "--broker", broker, "--site", SITE,
            "--gateway", GATEWAY, "--timeout", "2"]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path, _ = new_key("ops", tmp_path / "keys")
    return path


def test_dim_without_a_level_is_refused_and_sends_nothing(watched: tuple[LocalBroker, MqttWatch], key: Path) -> None:
    broker, watch = watched
    proc = streetedge(*cmd_args(broker.url, key, "dim"))
    one_line_error(proc, Exit.USAGE, "dim needs --level 0..100", "nothing sent")
    assert_nothing_sent(watch)


def test_switch_without_a_state_is_refused_and_sends_nothing(
    watched: tuple[LocalBroker, MqttWatch], key: Path
) -> None:
    broker, watch = watched
    proc = streetedge(*cmd_args(broker.url, key, "switch"))
    one_line_error(proc, Exit.USAGE, "switch needs --state on or --state off")
    assert_nothing_sent(watch)


def test_a_level_out_of_range_is_a_usage_error(key: Path) -> None:
    proc = streetedge(*cmd_args("mqtt://127.0.0.1:1", key, "dim", "--level", "140"))
    assert proc.returncode == Exit.USAGE and "expected an integer 0..100, got 140" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cmd_with_the_broker_down_says_so(key: Path) -> None:
    port = free_port()  # nothing listens there
    proc = streetedge(*cmd_args(f"mqtt://127.0.0.1:{port}", key, "dim", "--level", "40"))
    one_line_error(proc, Exit.UNAVAILABLE, f"broker mqtt://127.0.0.1:{port}", "Connection refused", "--broker")


def test_cmd_with_a_missing_key_file_says_how_to_make_one(
    watched: tuple[LocalBroker, MqttWatch], tmp_path: Path
) -> None:
    broker, watch = watched
    proc = streetedge(*cmd_args(broker.url, tmp_path / "nope.key", "dim", "--level", "40"))
    one_line_error(proc, Exit.USAGE, "nope.key: no such key file", "streetedge keys new")
    assert_nothing_sent(watch)
    assert not (tmp_path / "nope.key").exists()


def test_cmd_with_the_public_key_names_the_mistake(watched: tuple[LocalBroker, MqttWatch], key: Path) -> None:
    broker, watch = watched
    public = key.with_suffix(".pub")
    before = public.read_bytes()
    proc = streetedge(*cmd_args(broker.url, public, "dim", "--level", "40"))
    one_line_error(proc, Exit.USAGE, "not an Ed25519 private key", "this is a public key", "not NAME.pub")
    assert_nothing_sent(watch)
    assert public.read_bytes() == before


def _config(tmp_path: Path, *, outbox: Path, audit: Path) -> Path:
    config = tmp_path / "gateway.toml"
    config.write_text(
        f'site = "{SITE}"\ngateway = "{GATEWAY}"\n[broker]\nurl = "mqtt://127.0.0.1:{free_port()}"\n'
        f'[delivery]\noutbox = "{outbox}"\n[http]\nenabled = false\n'
        '[[bus]]\nname = "bus0"\ndevice = "/dev/null"\nparity = "N"\n'
        '[[node]]\nid = "lamp-1"\nbus = "bus0"\nunit = 1\n'
        f'[commands]\nreplay_db = "{tmp_path / "state" / "commands.sqlite"}"\naudit_log = "{audit}"\n'
        '[[key]]\nid = "ops"\npublic = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"\nactions = ["*"]\n'
        'targets = ["*"]\n'
    )
    return config


def test_run_on_a_fresh_machine_names_the_missing_state_directory(tmp_path: Path) -> None:
    """The example's /var/lib/streetedge does not exist on a fresh machine: said, not created."""
    state = tmp_path / "var-lib-streetedge"
    config = _config(tmp_path, outbox=state / "outbox.db", audit=state / "audit.jsonl")
    before = tree(tmp_path)
    proc = streetedge("run", "-c", str(config), cwd=tmp_path)
    one_line_error(proc, Exit.UNAVAILABLE, "delivery.outbox", f"directory {state} does not exist",
                   "StateDirectory=streetedge")
    assert tree(tmp_path) == before


def test_run_with_the_audit_log_in_a_missing_directory_creates_nothing(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    missing = tmp_path / "audit-dir"
    config = _config(tmp_path, outbox=tmp_path / "state" / "outbox.db", audit=missing / "audit.jsonl")
    before = tree(tmp_path)
    proc = streetedge("run", "-c", str(config), cwd=tmp_path)
    one_line_error(proc, Exit.UNAVAILABLE, "commands.audit_log", f"directory {missing} does not exist")
    assert tree(tmp_path) == before


def test_run_with_the_audit_log_under_a_file_names_it(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    blocker = tmp_path / "logs"
    blocker.write_text("not a directory\n")
    config = _config(tmp_path, outbox=tmp_path / "state" / "outbox.db", audit=blocker / "audit.jsonl")
    before = tree(tmp_path)
    proc = streetedge("run", "-c", str(config), cwd=tmp_path)
    one_line_error(proc, Exit.UNAVAILABLE, "commands.audit_log", f"{blocker} is not a directory")
    assert tree(tmp_path) == before


def test_run_with_a_damaged_outbox_file_says_so_and_leaves_it_alone(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    outbox = tmp_path / "state" / "outbox.db"
    outbox.write_bytes(bytes(range(256)) * 16)
    config = _config(tmp_path, outbox=outbox, audit=tmp_path / "state" / "audit.jsonl")
    before = tree(tmp_path)
    proc = streetedge("run", "-c", str(config), cwd=tmp_path)
    one_line_error(proc, Exit.UNAVAILABLE, f"delivery.outbox: outbox {outbox}", "not an SQLite database",
                   "moved aside")
    assert tree(tmp_path) == before


def test_run_with_a_damaged_roll_out_store_says_so_and_leaves_it_alone(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    rollouts = tmp_path / "state" / "commands-rollouts.sqlite"  # beside commands.replay_db
    rollouts.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 16)  # a torn header
    config = _config(tmp_path, outbox=tmp_path / "state" / "outbox.db", audit=tmp_path / "state" / "audit.jsonl")
    before = rollouts.read_bytes()
    proc = streetedge("run", "-c", str(config), cwd=tmp_path)
    one_line_error(proc, Exit.UNAVAILABLE, f"roll-out store {rollouts}: not a roll-out store, or damaged",
                   "moved aside")
    assert rollouts.read_bytes() == before


def test_keys_new_refuses_a_name_the_configuration_would_reject(tmp_path: Path) -> None:
    proc = streetedge("keys", "new", "bad name", "--dir", str(tmp_path / "keys"))
    one_line_error(proc, Exit.USAGE, "key name 'bad name'", "letters, digits, '_' and '-'", "nothing written")
    assert not (tmp_path / "keys").exists()


def test_decode_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    proc = streetedge("decode", str(tmp_path / "payload.cbor"))
    one_line_error(proc, Exit.USAGE, "payload.cbor: no such payload file")


def test_decode_of_garbage_says_it_is_not_cbor(tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(b"\xff\xfe")
    one_line_error(streetedge("decode", str(path)), Exit.USAGE, "not CBOR")


def test_help_lists_boards_roles_and_exit_codes_and_version_answers() -> None:
    top = streetedge("--help").stdout
    assert "exit codes: 0 done" in top and "``" not in top
    image = streetedge("image", "build", "--help").stdout
    assert "esp32_lamp" in image and "meter" in image
    version = streetedge("--version")
    assert version.returncode == 0 and version.stdout.startswith("streetedge ")


def test_every_option_outside_the_benches_says_what_it_does() -> None:
    import argparse

    from tools.cli import build_parser

    silent: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(child, [*path, name])
            elif action.help is None and path[:1] != ["bench"]:
                silent.append(" ".join([*path, *action.option_strings]) or action.dest)

    walk(build_parser(), [])
    assert silent == []
