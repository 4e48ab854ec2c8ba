"""Outbox throughput against a bare sqlite3 floor on the same schema, measured in one run.

Run ``python -m tools.bench.outbox``. It prints records/s for put_many in
batches and for take + ack in batches, for the synchronous Outbox, for
AsyncOutbox (one writer thread) and for a bare sqlite3 loop (executemany INSERT
in one transaction per batch; SELECT + one range DELETE per batch), with the
ratio of each to its floor. Every round runs every operation on fresh files;
records/s is the best round, the ratio the median over rounds of the ratio
within a round. It also
prints the bytes appended to the WAL per record (the disk writes that wear
flash), for records from one node and from ``--nodes``. It writes nothing but
temporary files.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from gateway.delivery.outbox import PAGE_SIZE, ROW_OVERHEAD, Outbox, OutboxRecord
from gateway.delivery.outbox_file import SCHEMA as _SCHEMA
from gateway.delivery.outbox_thread import AsyncOutbox

_FLOOR_INSERT = "INSERT INTO records (node, seq, kind, created, payload, historical) VALUES (?, ?, ?, ?, ?, ?)"


def make_records(count: int, payload: int, nodes: int = 50) -> list[OutboxRecord]:
    """``count`` records (1 in 50 an event) from ``nodes`` nodes in turn, with ``payload``-byte payloads."""
    now = time.time()
    return [
        OutboxRecord(f"lamp-{i % nodes:04d}", i, int(i % 50 == 0), now + i * 1e-6, os.urandom(payload))
        for i in range(count)
    ]


def batches(records: list[OutboxRecord], size: int) -> list[list[OutboxRecord]]:
    """Consecutive slices of ``size`` records."""
    return [records[i : i + size] for i in range(0, len(records), size)]


def _floor_db(path: Path, synchronous: str) -> sqlite3.Connection:
    """A bare connection with the outbox's schema and pragmas."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA locking_mode = EXCLUSIVE")
    db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    for statement in _SCHEMA:
        db.execute(statement)
    return db


def floor_put(path: Path, chunks: list[list[OutboxRecord]], synchronous: str) -> float:
    """Seconds to insert every chunk in its own transaction."""
    db = _floor_db(path, synchronous)
    start = time.perf_counter()
    for chunk in chunks:
        db.execute("BEGIN")
        db.executemany(_FLOOR_INSERT, chunk)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def floor_take_ack(path: Path, batch: int) -> float:
    """Seconds to read the oldest ``batch`` rows and delete them by range, one transaction per batch, until empty."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA locking_mode = EXCLUSIVE")
    start = time.perf_counter()
    while True:
        rows = db.execute(
            "SELECT id, node, seq, kind, created, payload, attempts, historical FROM records ORDER BY id LIMIT ?",
            (batch,),
        ).fetchall()
        if not rows:
            break
        db.execute("DELETE FROM records WHERE id <= ?", (rows[-1][0],))  # one statement, one transaction
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def outbox_put(path: Path, chunks: list[list[OutboxRecord]], synchronous: str, budget: int | None = None) -> float:
    """Seconds for put_many of every chunk (with ``budget``: only the second half, which evicts)."""
    ob = Outbox(path, synchronous=synchronous, **({"budget_bytes": budget} if budget else {}))
    timed = chunks
    if budget:
        half = len(chunks) // 2
        for chunk in chunks[:half]:
            ob.put_many(chunk)
        timed = chunks[half:]
    start = time.perf_counter()
    for chunk in timed:
        ob.put_many(chunk)
    elapsed = time.perf_counter() - start
    ob.close()
    return elapsed


def outbox_take_ack(path: Path, batch: int) -> float:
    """Seconds to take and ack ``batch`` entries at a time until the outbox is empty."""
    ob = Outbox(path)
    start = time.perf_counter()
    while entries := ob.take(batch):
        ob.ack([e.id for e in entries])
    elapsed = time.perf_counter() - start
    ob.close()
    return elapsed


async def _async_put_take(path: Path, chunks: list[list[OutboxRecord]], batch: int) -> tuple[float, float]:
    ob = await AsyncOutbox.open(path)
    start = time.perf_counter()
    for chunk in chunks:
        await ob.put_many(chunk)
    put = time.perf_counter() - start
    start = time.perf_counter()
    while entries := await ob.take(batch):
        await ob.ack([e.id for e in entries])
    take = time.perf_counter() - start
    await ob.close()
    return put, take


def async_put(path: Path, chunks: list[list[OutboxRecord]], batch: int) -> tuple[float, float]:
    """Seconds for AsyncOutbox put_many of every chunk, then for take + ack until empty."""
    return asyncio.run(_async_put_take(path, chunks, batch))


def frames(db: sqlite3.Connection) -> int:
    """Frames in the WAL (read by a passive checkpoint), then empty it."""
    count = int(db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return count


def wal_bytes(path: Path, chunks: list[list[OutboxRecord]], batch: int) -> tuple[float, float]:
    """WAL bytes appended per record by put_many and by take + ack, over the second half of ``chunks``.

    The first half only fills the file, so that the b-trees have their working depth. Autocheckpoint is
    off while measuring and the WAL's frame count is read at a manual checkpoint (the Outbox's connection
    is borrowed for that: the WAL belongs to it).
    """
    ob = Outbox(path)
    db = ob._db
    page = int(db.execute("PRAGMA page_size").fetchone()[0])
    db.execute("PRAGMA wal_autocheckpoint = 0")
    half = len(chunks) // 2
    for chunk in chunks[:half]:
        ob.put_many(chunk)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for chunk in chunks[half:]:
        ob.put_many(chunk)
    measured = sum(len(c) for c in chunks[half:])
    put = frames(db) * page / measured
    for _ in range(half):
        ob.ack([e.id for e in ob.take(batch)])
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    while entries := ob.take(batch):
        ob.ack([e.id for e in entries])
    take = frames(db) * page / measured
    ob.close()
    return put, take


def one_round(work: Path, chunks: list[list[OutboxRecord]], sync: str, batch: int, budget: int) -> dict[str, float]:
    """Seconds for every measured operation, each on a fresh file, in one go (so all see the same load)."""
    tag = time.monotonic_ns()
    floor_file, outbox_file = work / f"floor-{tag}.db", work / f"outbox-{tag}.db"
    t: dict[str, float] = {}
    t["floor put"] = floor_put(floor_file, chunks, sync)
    t["floor take"] = floor_take_ack(floor_file, batch)
    t["put"] = outbox_put(outbox_file, chunks, sync)
    t["take"] = outbox_take_ack(outbox_file, batch)
    t["evict"] = outbox_put(work / f"evict-{tag}.db", chunks, sync, budget=budget)
    t["async put"], t["async take"] = async_put(work / f"async-{tag}.db", chunks, batch)
    return t


def main() -> None:
    """Command-line entry: measure and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--payload", type=int, default=60, help="payload bytes per record")
    p.add_argument("--synchronous", default="NORMAL", choices=["NORMAL", "FULL"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--nodes", type=int, default=50, help="nodes the records come from, in turn")
    a = p.parse_args()
    records = make_records(a.records, a.payload, a.nodes)
    chunks = batches(records, a.batch)
    n = len(records)
    half = n - n // 2  # the evicting run times the second half only
    budget = sum(len(r.payload) + len(r.node) + ROW_OVERHEAD for r in records) // 2

    with tempfile.TemporaryDirectory(prefix="outbox-bench-") as tmp:
        work = Path(tmp)
        rounds = [one_round(work, chunks, a.synchronous, a.batch, budget) for _ in range(a.rounds)]
        wal = {}
        for nodes in sorted({1, a.nodes}):
            sample = batches(make_records(20_000, a.payload, nodes), a.batch)
            wal[nodes] = wal_bytes(work / f"wal-{nodes}.db", sample, a.batch)

    print(f"outbox benchmark: {n} records from {a.nodes} nodes, {a.payload}-byte payloads, batches of {a.batch}, "
          f"synchronous={a.synchronous}, {a.rounds} rounds, SQLite {sqlite3.sqlite_version}")
    print(f"{'operation':<46}{'records/s':>12}{'vs floor':>10}")
    table = [
        ("floor: executemany INSERT, 1 txn/batch", "floor put", "floor put", n),
        ("Outbox.put_many", "put", "floor put", n),
        ("Outbox.put_many at budget (evicts as much)", "evict", "floor put", half),
        ("AsyncOutbox.put_many (writer thread)", "async put", "floor put", n),
        ("floor: SELECT + range DELETE, 1 txn/batch", "floor take", "floor take", n),
        ("Outbox.take + ack", "take", "floor take", n),
        ("AsyncOutbox.take + ack (writer thread)", "async take", "floor take", n),
    ]
    for name, key, floor, count in table:
        rate = count / min(r[key] for r in rounds)
        # per-record time over the floor's, within each round (same load), then the median of the rounds
        ratio = statistics.median((r[key] / count) / (r[floor] / n) for r in rounds)
        print(f"{name:<46}{rate:>12,.0f}{ratio:>9.2f}x")
    print("(records/s: best round; vs floor: median over rounds of time per record relative to the bare")
    print(" sqlite3 loop in the same round; 1.00x = no overhead)")
    print(f"{'disk writes: WAL bytes per record':<46}{'put':>12}{'take+ack':>10}")
    for nodes, (put_b, take_b) in wal.items():
        print(f"{f'  records from {nodes} node(s) in turn':<46}{put_b:>12,.0f}{take_b:>10,.0f}")


if __name__ == "__main__":
    main()
