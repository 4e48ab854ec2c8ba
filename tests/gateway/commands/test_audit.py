"""The audit log: chained entries, edits found at the first broken line, torn tails kept, restarts continue."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

from gateway.commands.audit import GENESIS, AuditLog, entry_hash, verify_log
from gateway.commands.replay import INTERRUPTED, ReplayStore


def write(path: Path, n: int, start: float = 1_800_000_000.0) -> list[bytes]:
    published: list[bytes] = []
    log = AuditLog(path, publish=published.append, clock=lambda: start)
    for i in range(n):
        log.append("refused", id=f"c-{i}", reason="malformed", detail="x").result(10)
    log.close()
    return published


def test_entries_chain_and_verify(tmp_path: Path) -> None:
    """Entries link by prev/hash from GENESIS; seq counts; verify says intact; publish sees every entry."""
    path = tmp_path / "audit.jsonl"
    assert len(write(path, 5)) == 5
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["prev"] == GENESIS and [e["seq"] for e in lines] == [1, 2, 3, 4, 5]
    assert all(e["hash"] == entry_hash(e) for e in lines)
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(lines))
    verdict = verify_log(path)
    assert verdict.ok and verdict.entries == 5 and verdict.head == lines[-1]["hash"]


def test_a_restart_continues_the_chain(tmp_path: Path) -> None:
    """A second AuditLog on the same file goes on from the last entry."""
    path = tmp_path / "audit.jsonl"
    write(path, 2)
    write(path, 2)
    verdict = verify_log(path)
    assert verdict.ok and verdict.entries == 4


def test_edits_deletions_and_reordering_are_found_at_their_line(tmp_path: Path) -> None:
    """Change a field, drop a line, swap two lines: verify names the first broken line."""
    path = tmp_path / "audit.jsonl"
    write(path, 6)
    good = path.read_text().splitlines(keepends=True)
    edited = list(good)
    edited[2] = edited[2].replace('"malformed"', '"expired"')
    path.write_text("".join(edited))
    verdict = verify_log(path)
    assert (verdict.bad_line, verdict.entries - 1) == (3, 2) and "edited" in verdict.problem
    path.write_text("".join(good[:3] + good[4:]))
    assert verify_log(path).bad_line == 4
    path.write_text("".join([*good[:1], good[2], good[1], *good[3:]]))
    assert verify_log(path).bad_line == 2


def test_a_torn_last_line_is_kept_inside_an_entry(tmp_path: Path) -> None:
    """A crash mid-write leaves half a line: the next start cuts it off into a torn_tail entry."""
    path = tmp_path / "audit.jsonl"
    write(path, 3)
    with path.open("ab") as f:
        f.write(b'{"seq":4,"ti')
    assert not verify_log(path).ok
    write(path, 1)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[3]["event"] == "torn_tail" and lines[3]["bytes"] == 12
    assert verify_log(path).ok


def test_replay_store_marks_running_commands_interrupted_on_restart(tmp_path: Path) -> None:
    """An id claimed but never finished (the gateway died) is failed/interrupted at the next start."""
    path = tmp_path / "replay.sqlite"
    store = ReplayStore(path, now=100.0)
    store.claim("c-1", b"d" * 32, "ops", 160.0, 100.0)
    store.claim("c-2", b"e" * 32, "ops", 160.0, 100.0)
    store.finish("c-2", {"id": "c-2", "status": "done"})
    store.close()
    again = ReplayStore(path, now=120.0)
    seen = again.lookup("c-1")
    assert seen is not None and seen.result is not None and seen.result["reason"] == INTERRUPTED
    assert again.lookup("c-2").result == {"id": "c-2", "status": "done"}  # type: ignore[union-attr]
    assert again.purge(160.0 + 86400 + 1) == 2 and len(again) == 0
    again.close()


def test_replay_claim_is_seen_at_once_and_on_disk_when_its_future_completes(tmp_path: Path) -> None:
    """The router checks ids without waiting for the disk; it waits for the future before touching a node."""
    path = tmp_path / "replay.sqlite"
    store = ReplayStore(path, now=100.0)
    claimed = store.claim("c-1", b"d" * 32, "ops", 160.0, 100.0)
    seen = store.lookup("c-1")
    assert seen is not None and seen.digest == b"d" * 32 and seen.result is None
    claimed.result(timeout=30)
    with sqlite3.connect(path) as other:  # another reader: the row is committed
        assert other.execute("SELECT key FROM seen WHERE id = 'c-1'").fetchone() == ("ops",)
    store.finish("c-1", {"id": "c-1", "status": "done"}).result(timeout=30)
    assert store.lookup("c-1").result == {"id": "c-1", "status": "done"}  # type: ignore[union-attr]
    store.close()
