"""The ``update`` action before anything is written: its parameters, the package store, the roll-out plan.

The roll-out itself runs against real lamps in ``tests/gateway/update/test_rollout.py`` and, as a signed
command through the daemon, in ``hil_tests/test_rollout.py``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from gateway.commands.parse import BAD_PARAMETERS, UNKNOWN_PACKAGE, CommandRejected, check_command, parse_target
from gateway.commands.router import _store as store_name
from gateway.commands.targets import command_targets, resolve_target
from gateway.commands.update_action import UpdateAction
from gateway.commands.update_params import check_cancel_params, check_params
from gateway.service.config import Config, parse_config
from gateway.transport.bus import open_bus
from gateway.update.package import PackageError, make_package
from gateway.update.rollout_store import RolloutStoreWriteError
from gateway.update.store import PackageStore, UnknownPackage
from tools.operator import build_command

KEY = b"unit test key"
IMAGE = bytes(range(256)) * 8


def good(**change: object) -> dict[str, object]:
    params: dict[str, object] = {"package": "ab" * 32, "canary": ["lamp-1"], "stop_on_failure": True}
    params.update(change)
    return {k: v for k, v in params.items() if v is not None}


@pytest.mark.parametrize(("params", "words"), [
    (good(package=None), "update needs 'package'"),
    (good(canary=None), "update needs 'canary' (nothing is assumed: the nodes updated first, or [] for none)"),
    (good(stop_on_failure=None), "update needs 'stop_on_failure'"),
    (good(package="AB" * 32), "64 lower-case hex digits"),
    (good(package="ab" * 31), "64 lower-case hex digits"),
    (good(canary="lamp-1"), "'canary' must be a list"),
    (good(canary=[1]), "'canary' must be a list"),
    (good(stop_on_failure=1), "'stop_on_failure' must be true or false"),
    (good(force=True), "unexpected 'force'"),
])
def test_parameters_are_all_required_and_checked(params: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_params(params)
    assert words in str(exc.value)


@pytest.mark.parametrize(("params", "words"), [
    ({}, "cancel_update needs 'rollout' (nothing is assumed: the id of the update command to stop)"),
    ({"rollout": ""}, "'rollout' must be the update command's id, 1..64 characters"),
    ({"rollout": 9}, "'rollout' must be the update command's id"),
    ({"rollout": "c-9", "force": True}, "cancel_update takes 'rollout' only; unexpected 'force'"),
])
def test_a_cancel_names_its_roll_out(params: dict[str, object], words: str) -> None:
    with pytest.raises(ValueError) as exc:
        check_cancel_params(params)
    assert words in str(exc.value)
    command = check_command(build_command("group:street", "cancel_update", {"rollout": "c-9"}, "x-1", now=1.8e9))
    assert command.params == {"rollout": "c-9"} and command.describe() == "cancel roll-out c-9"


def test_a_whole_command_carries_them_unchanged() -> None:
    command = check_command(build_command("group:street", "update", good(canary=[]), "u-1", now=1.8e9))
    assert command.params == {"package": "ab" * 32, "canary": [], "stop_on_failure": True}
    assert command.describe() == "update to abababababab"


def _store(folder: Path) -> tuple[str, str]:
    folder.mkdir()
    lamp = make_package(IMAGE, key=KEY, role="lamp", board="sim")
    meter = make_package(IMAGE[:1000], key=KEY, role="meter", board="sim")
    (folder / "a-lamp.update").write_bytes(lamp.to_bytes())
    (folder / "b-meter.update").write_bytes(meter.to_bytes())
    (folder / "readme.txt").write_text("not a package")
    (folder / "sub").mkdir()
    return lamp.digest.hex(), meter.digest.hex()


def test_the_store_finds_a_package_by_its_image_hash(tmp_path: Path) -> None:
    lamp, meter = _store(tmp_path / "packages")
    store = PackageStore(str(tmp_path / "packages"))
    assert store.find(lamp).role == "lamp" and store.find(meter).role == "meter"
    with pytest.raises(UnknownPackage, match=r"no package with image sha256 cdcdcdcdcdcdcdcd\.\.\. in .* \(3 file"):
        store.find("cd" * 32)
    with pytest.raises(UnknownPackage, match="no package directory"):
        PackageStore("").find(lamp)
    with pytest.raises(UnknownPackage, match="No such file"):
        PackageStore(str(tmp_path / "missing")).find(lamp)


def test_a_corrupted_package_is_named_not_used(tmp_path: Path) -> None:
    lamp, _ = _store(tmp_path / "packages")
    path = tmp_path / "packages" / "a-lamp.update"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one image byte: the header's hash no longer matches
    path.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="corrupted"):
        PackageStore(str(tmp_path / "packages")).find(lamp)


def _config(packages: Path) -> Config:
    return parse_config(f"""
site = "s"
gateway = "g"
[[bus]]
name = "line"
device = "/dev/null"
[[bus]]
name = "tcp"
type = "tcp"
host = "127.0.0.1"
port = 1502
[[node]]
id = "lamp-1"
bus = "line"
unit = 1
[[node]]
id = "lamp-2"
bus = "line"
unit = 2
[[node]]
id = "lamp-3"
bus = "line"
unit = 3
[[node]]
id = "meter-1"
bus = "line"
unit = 4
role = "meter"
[[node]]
id = "lamp-9"
bus = "tcp"
unit = 9
[groups]
canaries = ["lamp-3", "lamp-2"]
lamps = ["lamp-1", "lamp-2", "lamp-3"]
[update]
packages = "{packages}"
""")


def _plan(tmp_path: Path, target: str, **change: object) -> list[tuple[str, int]]:
    lamp, _ = _store(tmp_path / "packages")
    config = _config(tmp_path / "packages")
    buses = {b.name: open_bus(b) for b in config.bus}
    nodes_by_id = command_targets(config, ble=False)
    action = UpdateAction(config, buses, lambda payload: None)
    params = good(**{"package": lamp, **change})
    command = check_command(build_command(target, "update", params, "u-1", now=1.8e9))
    nodes = resolve_target(config, nodes_by_id, command.target)
    plan = action.plan(command, nodes, lambda t: resolve_target(config, nodes_by_id, t))
    return [(t.node, t.unit) for t in plan.targets[:plan.canaries]] + [("|", 0)] + [
        (t.node, t.unit) for t in plan.targets[plan.canaries:]]


def test_the_plan_puts_the_canaries_first(tmp_path: Path) -> None:
    """Canaries as the command names them (a group's members in configuration order, each node once), then the rest."""
    order = _plan(tmp_path, "group:lamps", canary=["lamp-3", "group:canaries"])
    assert order == [("lamp-3", 3), ("lamp-2", 2), ("|", 0), ("lamp-1", 1)]


@pytest.mark.parametrize(("target", "change", "reason", "words"), [
    ("lamp-1", {"package": "cd" * 32}, UNKNOWN_PACKAGE, "no package with image sha256 cdcd"),
    ("bus:line", {"canary": []}, BAD_PARAMETERS, "meter-1 is a meter; the package is a lamp image"),
    ("lamp-9", {"canary": []}, BAD_PARAMETERS, "lamp-9: bus tcp carries no file records"),
    ("lamp-1", {"canary": ["lamp-2"]}, BAD_PARAMETERS, "canary lamp-2 is not among the command's targets"),
    ("lamp-1", {"canary": ["bus:line"]}, BAD_PARAMETERS, "canary 'bus:line': name node ids or group:<name>"),
    ("lamp-1", {"canary": ["no such"]}, BAD_PARAMETERS, "canary: target 'no such'"),
])
def test_what_cannot_be_rolled_out_is_refused_before_anything_is_written(
        tmp_path: Path, target: str, change: dict[str, object], reason: str, words: str) -> None:
    with pytest.raises(CommandRejected) as exc:
        _plan(tmp_path, target, **change)
    assert (exc.value.reason, exc.value.command_id) == (reason, "u-1")
    assert words in exc.value.detail, exc.value.detail


def test_a_canary_that_names_no_node_is_an_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(CommandRejected) as exc:
        _plan(tmp_path, "lamp-1", canary=["lamp-7"])
    assert exc.value.reason == "unknown_target" and parse_target("lamp-7").name in exc.value.detail


def test_a_roll_out_store_that_cannot_be_written_is_named_and_nothing_is_sent(tmp_path: Path) -> None:
    """The router words a failed write by the store's name: here the roll-out store's, not the replay store's."""
    lamp, _ = _store(tmp_path / "packages")
    config = msgspec.structs.replace(_config(tmp_path / "packages"), commands=msgspec.structs.replace(
        _config(tmp_path / "packages").commands, replay_db=str(tmp_path / "commands.sqlite")))
    sent: list[bytes] = []
    action = UpdateAction(config, {b.name: open_bus(b) for b in config.bus}, sent.append)
    action.store._db.execute("PRAGMA query_only = ON")  # SQLite's own refusal, as from a read-only disk
    command = check_command(build_command("lamp-1", "update", good(package=lamp, canary=[]), "u-1", now=1.8e9))
    nodes = resolve_target(config, command_targets(config, ble=False), command.target)
    plan = action.plan(command, nodes, lambda t: [])

    with pytest.raises(RolloutStoreWriteError) as exc:
        asyncio.run(action.run(command, plan))
    action.close()
    assert str(tmp_path / "commands-rollouts.sqlite") in str(exc.value) and "readonly" in str(exc.value)
    assert store_name(exc.value) == "roll-out store" and sent == [], "named, and not a byte sent"
