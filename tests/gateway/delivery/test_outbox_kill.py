"""The outbox under SIGKILL: a real child process killed mid-write, the file checked after every kill."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from gateway.delivery.outbox import Outbox

REPO = Path(__file__).resolve().parents[3]

# Puts batches of readings with increasing seq and reports each batch once put_many has returned; now
# and then takes a few and acknowledges them, announcing the seqs before the ack and confirming after.
# It resumes after the newest seq in the file or reported, whichever is higher (a kill between commit
# and report must not make it store a batch twice: seqs are what a node hands out, never repeated).
PRODUCER = """
import random, sys
from gateway.delivery.outbox import Outbox, OutboxRecord
path, seq, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
ob = Outbox(path)
newest = ob._db.execute("SELECT max(seq) FROM records").fetchone()[0]
seq = max(seq, -1 if newest is None else newest + 1)
print("open", flush=True)
while True:
    n = rng.randint(1, 100)
    ob.put_many([OutboxRecord("n1", s, 0, float(s), b"payload-%d" % s) for s in range(seq, seq + n)])
    seq += n
    print("put", seq - 1, flush=True)
    if rng.random() < 0.5:
        taken = ob.take(rng.randint(1, 150))
        if taken:
            print("acking", *[e.seq for e in taken], flush=True)
            ob.ack([e.id for e in taken])
            print("acked", flush=True)
"""

# Takes some entries, acknowledges the first half, reports both, then waits to be killed.
CONSUMER = """
import sys, time
from gateway.delivery.outbox import Outbox
ob = Outbox(sys.argv[1])
taken = ob.take(int(sys.argv[2]))
half = len(taken) // 2
ob.ack([e.id for e in taken[:half]])
print("acked", *[e.id for e in taken[:half]], flush=True)
print("kept", *[e.id for e in taken[half:]], flush=True)
time.sleep(60)
"""


def _child(script: str, *args: object, log: Path) -> subprocess.Popen[bytes]:
    """Start ``script`` in a fresh interpreter, its stdout going to ``log`` (a file survives the kill)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", script, *map(str, args)], stdout=out, stderr=subprocess.STDOUT, env=env
        )


def _wait_for_line(log: Path, child: subprocess.Popen[bytes], within: float = 60.0) -> None:
    """Until the child has written its first complete line (or exited)."""
    deadline = time.monotonic() + within
    while b"\n" not in log.read_bytes() and child.poll() is None:
        assert time.monotonic() < deadline, f"the child wrote nothing in {within} s"
        time.sleep(0.005)


def _lines(log: Path) -> list[list[str]]:
    """Complete lines of a child's log, split in words (a kill may cut the last line short)."""
    text = log.read_text()
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return [line.split() for line in text.splitlines()]


def _check_file(path: Path) -> list[int]:
    """The database is sound and holds each seq once; returns the stored seqs."""
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'records'").fetchone():
            return []  # killed before the schema was created
        stored = [s for (s,) in db.execute("SELECT seq FROM records WHERE node = 'n1' AND kind = 0")]
    finally:
        db.close()
    assert len(stored) == len(set(stored)), "a record is stored twice"
    return stored


def test_sigkill_never_loses_a_committed_record_nor_revives_an_acked_one(tmp_path: Path) -> None:
    """25 kills at random instants (some during start-up): committed seqs are all there or being acked."""
    path = tmp_path / "outbox.db"
    rng = random.Random(20)
    committed = -1  # highest seq reported as committed; every seq up to it was committed
    acking: set[int] = set()  # announced for ack (the ack may or may not have committed)
    acked: set[int] = set()  # ack returned
    runs_with_puts = 0
    for run in range(25):
        log = tmp_path / f"producer-{run}.log"
        child = _child(PRODUCER, path, committed + 1, run, log=log)
        if run % 3:  # two kills in three at a random instant after the open, however slow the start-up
            _wait_for_line(log, child)
        time.sleep(rng.uniform(0.03, 0.6))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        lines = _lines(log)
        assert all(w[0] in ("open", "put", "acking", "acked") for w in lines), log.read_text()[-2000:]
        announced: list[int] = []
        for words in lines:
            if words[0] == "put":
                committed = int(words[1])
            elif words[0] == "acking":
                announced = [int(w) for w in words[1:]]
                acking.update(announced)
            elif words[0] == "acked":
                acked.update(announced)
        runs_with_puts += any(w[0] == "put" for w in lines)

        stored = set(_check_file(path))
        missing = [s for s in range(committed + 1) if s not in stored and s not in acking]
        assert not missing, f"run {run}: committed seqs lost: {missing[:20]}"
        revived = acked & stored
        assert not revived, f"run {run}: acked seqs came back: {sorted(revived)[:20]}"

    assert runs_with_puts >= 10, "the child rarely got to write: the test did not test much"
    assert committed > 0 and acked
    with Outbox(path) as ob:
        count, _ = ob.depth()
        entries = ob.take(count + 1)
    assert len(entries) == count
    got = [e.seq for e in entries]
    assert got == sorted(got), "FIFO order broken"


def test_sigkill_between_take_and_ack_hands_the_entries_out_again(tmp_path: Path) -> None:
    """A consumer killed after take: what it acked is gone, what it held comes back, same ids, in order."""
    path = tmp_path / "outbox.db"
    from gateway.delivery.outbox import OutboxRecord

    with Outbox(path) as ob:
        ob.put_many([OutboxRecord("n1", s, s % 2, float(s), b"x%d" % s) for s in range(100)])
        all_ids = [e.id for e in ob.take(100)]
    gone: set[int] = set()
    for run, batch in enumerate((30, 7, 41)):
        log = tmp_path / f"consumer-{run}.log"
        child = _child(CONSUMER, path, batch, log=log)
        deadline = time.monotonic() + 30
        while len(_lines(log)) < 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        lines = _lines(log)
        assert [w[0] for w in lines] == ["acked", "kept"], log.read_text()
        acked = [int(w) for w in lines[0][1:]]
        kept = [int(w) for w in lines[1][1:]]
        assert len(acked) + len(kept) == batch
        gone.update(acked)
        with Outbox(path) as ob:
            again = ob.take(200)
        assert [e.id for e in again] == [i for i in all_ids if i not in gone]
        assert [e.id for e in again[: len(kept)]] == kept
        assert all(e.attempts == 0 for e in again)
        _check_file(path)
