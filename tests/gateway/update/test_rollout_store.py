"""The roll-out store: what a resumed roll-out reads back, and files it must refuse without touching them."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.commands.replay import ReplayStore
from gateway.update.rollout import NodeState, Target
from gateway.update.rollout_store import KEEP, RolloutStore, RolloutStoreError, rollouts_path

PACKAGE = "ab" * 32
TARGETS = [Target("lamp-2", "line", 2), Target("lamp-1", "line", 1), Target("lamp-3", "other", 3)]


def _store(path: Path, now: float = 1000.0) -> RolloutStore:
    return RolloutStore(path, now=now)


def test_a_running_roll_out_reads_back_as_it_stood(tmp_path: Path) -> None:
    """Plan, canaries, stop rule and each node's state (slot and rollbacks included) survive a reopen."""
    store = _store(tmp_path / "r.sqlite")
    number = store.begin("c-9", PACKAGE, TARGETS, 1, False, 1000.0)
    store.node(number, "lamp-2", NodeState("confirmed", 0, 0))
    store.node(number, "lamp-1", NodeState("committing", 1, 2))
    store.begin("c-10", PACKAGE, TARGETS[:1], 0, True, 1001.0)
    store.end("c-10", "finished", "done", 1002.0)
    store.close()
    store = _store(tmp_path / "r.sqlite")
    [again] = store.running()
    assert (again.id, again.number, again.package, again.targets) == ("c-9", number, PACKAGE, TARGETS)
    assert (again.canaries, again.stop_on_failure) == (1, False)
    assert again.nodes == {"lamp-2": NodeState("confirmed", 0, 0), "lamp-1": NodeState("committing", 1, 2),
                           "lamp-3": NodeState("pending")}
    finished = store.get("c-10")
    assert finished is not None and finished.state == "finished"  # kept for the record, never resumed
    store.end("c-9", "cancelled", "cancelled by c-11", 1003.0)
    store.end("c-9", "finished", "stopped", 1004.0)  # the cancel stands
    cancelled = store.get("c-9")
    assert store.running() == [] and cancelled is not None and cancelled.state == "cancelled"
    store.close()


def test_ended_roll_outs_are_purged_after_a_month_running_ones_never(tmp_path: Path) -> None:
    store = _store(tmp_path / "r.sqlite")
    store.begin("old", PACKAGE, TARGETS, 0, True, 0.0)
    store.end("old", "finished", "", 10.0)
    store.begin("forgotten", PACKAGE, TARGETS, 0, True, 0.0)
    store.close()
    store = _store(tmp_path / "r.sqlite", now=10.0 + KEEP + 1)
    assert store.get("old") is None
    assert [r.id for r in store.running()] == ["forgotten"]
    store.close()


def test_an_ended_roll_out_gives_way_to_a_new_command_with_its_id(tmp_path: Path) -> None:
    """The replay store forgets ids a day after expiry, the roll-out store keeps a month: a reused id starts afresh."""
    store = _store(tmp_path / "r.sqlite")
    first = store.begin("c-1", PACKAGE, TARGETS, 0, True, 0.0)
    store.node(first, "lamp-1", NodeState("confirmed", 0, 0))
    store.end("c-1", "finished", "", 1.0)
    second = store.begin("c-1", PACKAGE, TARGETS[:2], 1, True, 2.0)
    [again] = store.running()
    assert second != first and again.number == second and set(again.nodes.values()) == {NodeState("pending")}
    store.close()
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        assert db.execute("SELECT count(*) FROM node").fetchone()[0] == 2  # the old rows went with their roll-out


def test_a_state_no_roll_out_has_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "r.sqlite")
    number = store.begin("c-1", PACKAGE, TARGETS, 0, True, 0.0)
    with pytest.raises(ValueError, match="unknown node state 'sending'"):
        store.node(number, "lamp-1", NodeState("sending"))
    with pytest.raises(KeyError, match="no node 'lamp-7'"):
        store.node(number, "lamp-7", NodeState("started", 0, 0))
    with pytest.raises(ValueError, match="ends finished or cancelled"):
        store.end("c-1", "running", "", 1.0)
    store.close()


def _refused(path: Path, words: str) -> None:
    before = path.read_bytes()
    with pytest.raises(RolloutStoreError) as exc:
        RolloutStore(path, now=0.0)
    assert str(path) in str(exc.value) and words in str(exc.value), exc.value
    assert path.read_bytes() == before  # nothing lost: the file is left as it was


def test_a_file_of_garbage_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    path.write_bytes(b"these are not the roll-outs you are looking for\n" * 200)
    _refused(path, "not a roll-out store, or damaged (file is not a database)")


def test_another_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "commands.sqlite"
    ReplayStore(path, now=0.0).close()  # a real store of the gateway's, only not this one
    _refused(path, "not a roll-out store (format 0, tables seen)")


def test_a_torn_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store = _store(path)
    for i in range(60):  # enough rows for several pages
        store.begin(f"c-{i}", PACKAGE, TARGETS * 5, 0, True, 0.0)
    store.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # cut where a dying disk or a bad copy would
    _refused(path, "damaged")


def test_a_row_this_gateway_never_wrote_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite"
    store = _store(path)
    store.begin("c-1", PACKAGE, TARGETS, 0, True, 0.0)
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE node SET state = 'flying' WHERE node = 'lamp-1'")
    _refused(path, "roll-out 'c-1': node row 1 ('lamp-1', state 'flying') is none this gateway writes")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE node SET state = 'pending'")
        db.execute("UPDATE rollout SET package = 'latest'")
    _refused(path, "roll-out 'c-1': package 'latest' is not an image hash")


def test_a_power_cut_in_the_middle_of_a_write_keeps_what_was_committed(tmp_path: Path) -> None:
    """The database and its write-ahead log copied while open, the log's last frame torn: the last
    committed states read back, the torn write is simply not there."""
    path = tmp_path / "r.sqlite"
    store = _store(path)
    number = store.begin("c-1", PACKAGE, TARGETS, 1, True, 0.0)
    store.node(number, "lamp-2", NodeState("started", 0, 0))
    store.node(number, "lamp-2", NodeState("committing", 0, 0))
    cut = tmp_path / "cut"
    cut.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{path}{suffix}", f"{cut / 'r.sqlite'}{suffix}")
    store.close()
    wal = Path(f"{cut / 'r.sqlite'}-wal")
    wal.write_bytes(wal.read_bytes()[:-100])  # the last commit's frame half written
    again = RolloutStore(cut / "r.sqlite", now=0.0)
    [stored] = again.running()
    assert stored.targets == TARGETS
    assert stored.nodes["lamp-2"] == NodeState("started", 0, 0)  # the commit before the torn one
    again.close()


def test_the_store_lives_beside_the_replay_store() -> None:
    assert rollouts_path("/var/lib/streetedge/commands.sqlite") == "/var/lib/streetedge/commands-rollouts.sqlite"
    assert rollouts_path("") == ""
