"""Power loss: SQLite, the outbox and the whole gateway on a filesystem that forgets what was not fsynced.

The filesystem is :mod:`tools.sim.power_cut_fs` (FUSE): data reaches its "disk" only when fsynced, and a
cut also tears the newest unsynced write. A writer process is SIGKILLed, the power cut, the filesystem
mounted again on what survived. ``synchronous = FULL`` must keep every commit that returned; ``NORMAL``
may lose the tail but never its consistency. The gateway scenario is the one of ``streetedge bench
reliability`` (``power-loss``) at reduced size; ``-m slow`` runs it at full size.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tools.power_loss import check_power_loss, run_power_loss
from tools.sim.power_cut_mount import PowerCutMount, available

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(bool(available()), reason=available() or "power-cut filesystem available")

# Commits one row per transaction and prints its number once COMMIT has returned.
SQLITE_WRITER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA locking_mode = EXCLUSIVE")
db.execute("PRAGMA page_size = 1024")
db.execute("PRAGMA journal_mode = WAL")
db.execute("PRAGMA synchronous = " + sys.argv[2])
db.execute("CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, v BLOB NOT NULL)")
i = db.execute("SELECT coalesce(max(i), 0) FROM t").fetchone()[0]
while True:
    i += 1
    db.execute("INSERT INTO t VALUES (?, randomblob(200))", (i,))
    print(i, flush=True)
"""

# The outbox as the gateway drives it: put_many, take, ack; reports what returned.
OUTBOX_WRITER = """
import random, sys
from gateway.delivery.outbox import Outbox, OutboxRecord
path, sync, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
ob = Outbox(path, synchronous=sync)
print("session", ob.next_session(), flush=True)
newest = ob._db.execute("SELECT max(seq) FROM records").fetchone()[0]
seq = 0 if newest is None else newest + 1
while True:
    n = rng.randint(1, 20)
    print("putting", seq, seq + n - 1, flush=True)
    ob.put_many([OutboxRecord("n1", s, 0, float(s), b"payload-%d" % s) for s in range(seq, seq + n)])
    print("put", seq, seq + n - 1, flush=True)
    seq += n
    if rng.random() < 0.5:
        taken = ob.take(rng.randint(1, 30))
        if taken:
            print("acking", *[e.seq for e in taken], flush=True)
            ob.ack([e.id for e in taken])
            print("acked", flush=True)
"""


def run_and_cut(fs: PowerCutMount, args: list[str], rng: random.Random) -> tuple[list[str], dict[str, object]]:
    """Run a writer for a random moment, SIGKILL it, cut the power; its output lines and the cut's report."""
    proc = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    out = proc.stdout.readline()  # started writing
    time.sleep(rng.uniform(0.2, 1.5))
    proc.kill()
    out += proc.stdout.read()
    proc.wait()
    return out.split("\n")[:-1], fs.cut(tear=True)  # the last line may be cut short by the kill


def sqlite_rows(path: Path) -> tuple[list[int], str]:
    db = sqlite3.connect(path)
    try:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 't'").fetchone():
            # NORMAL, cut before any checkpoint synced the file: even the table is gone (an empty prefix)
            return [], integrity
        rows = [r[0] for r in db.execute("SELECT i FROM t ORDER BY i")]
        return rows, integrity
    finally:
        db.close()


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_sqlite_full_keeps_every_commit_and_normal_keeps_a_consistent_prefix(sync: str, tmp_path: Path) -> None:
    rng = random.Random(3)
    disk, mnt = tmp_path / "disk", tmp_path / "mnt"
    committed = 0
    lost = 0
    for cut in range(3):
        fs = PowerCutMount(disk, mnt, seed=cut).start()
        lines, report = run_and_cut(fs, [SQLITE_WRITER, str(mnt / "db"), sync], rng)
        committed = max(committed, *(int(x) for x in lines))
        rows, integrity = sqlite_rows(disk / "db")
        assert integrity == "ok"
        assert rows == list(range(1, len(rows) + 1)), "what survived is not a prefix of what was committed"
        if sync == "FULL":
            # a commit that returned after the last line printed may be there too
            assert len(rows) >= committed, f"cut {cut}: {committed - len(rows)} committed rows lost ({report})"
        lost += max(0, committed - len(rows))
        committed = len(rows)
    if sync == "NORMAL":
        assert lost > 0, "NORMAL lost nothing: were the writes synced anyway? (the cut tested nothing)"


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_outbox_after_power_cuts(sync: str, tmp_path: Path) -> None:
    """FULL: every put that returned is there, every ack that returned stays deleted; NORMAL: consistent.

    In both modes a session number, once handed out, is never handed out again.
    """
    from gateway.delivery.outbox import Outbox

    rng = random.Random(5)
    disk, mnt = tmp_path / "disk", tmp_path / "mnt"
    put: set[int] = set()
    acked: set[int] = set()
    acking: set[int] = set()  # announced before the ack: deleted or not, depending on the moment of the kill
    sessions: list[int] = []
    putting: set[int] = set()
    for cut in range(3):
        fs = PowerCutMount(disk, mnt, seed=cut).start()
        lines, _report = run_and_cut(fs, [OUTBOX_WRITER, str(mnt / "outbox.db"), sync, str(cut)], rng)
        for line in lines:
            word, *numbers = line.split()
            if word == "putting":  # a kill after the commit, before "put": stored, never announced
                putting = set(range(int(numbers[0]), int(numbers[1]) + 1))
            elif word == "put":
                put.update(range(int(numbers[0]), int(numbers[1]) + 1))
            elif word == "session":
                sessions.append(int(numbers[0]))
            elif word == "acking":
                acking = {int(n) for n in numbers}
            else:
                acked |= acking
        assert len(sessions) == cut + 1 and sessions == sorted(set(sessions)), f"session reused: {sessions}"
        with Outbox(disk / "outbox.db") as box:  # opens, checks the schema, loads the counters
            stored = {e.seq for e in box.take(1_000_000)}
        if sync == "FULL":
            assert put - acking - acked <= stored, f"committed puts lost: {sorted(put - acked - stored)[:10]}"
            assert not stored & acked, f"acknowledged records back: {sorted(stored & acked)[:10]}"
        else:
            assert stored <= put | putting  # nothing invented; the tail may be gone
        # The next round starts from what survived (an unannounced commit that survived included).
        put, acked, acking, putting = {s for s in put | putting if s in stored}, set(), set(), set()


SESSION_TAKER = """
import sys, time
from gateway.delivery.outbox import Outbox
ob = Outbox(sys.argv[1], synchronous=sys.argv[2])
print("session", ob.next_session(), flush=True)
time.sleep(60)  # nothing else written: no checkpoint comes to sync it by chance
"""


@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_a_session_number_survives_a_power_cut_in_either_mode(sync: str, tmp_path: Path) -> None:
    """A reused session would let a consumer take an old connection's Will for the new one's death."""
    rng = random.Random(3)
    disk, mnt = tmp_path / "disk", tmp_path / "mnt"
    sessions = []
    for cut in range(3):
        fs = PowerCutMount(disk, mnt, seed=cut).start()
        lines, _report = run_and_cut(fs, [SESSION_TAKER, str(mnt / "outbox.db"), sync], rng)
        sessions += [int(line.split()[1]) for line in lines if line.startswith("session ")]
    assert sessions == [1, 2, 3]


def test_gateway_power_cuts_full_lose_nothing_acknowledged(tmp_path: Path) -> None:
    figures = run_power_loss(tmp_path, synchronous="FULL", cuts=3)
    check_power_loss(figures, strict=True)


@pytest.mark.slow
@pytest.mark.parametrize("sync", ["FULL", "NORMAL"])
def test_gateway_power_cuts_at_full_size(sync: str, tmp_path: Path) -> None:
    figures = run_power_loss(tmp_path, synchronous=sync, full=True)
    check_power_loss(figures, strict=sync == "FULL")
