"""The outbox's SQLite memory stays flat whatever the sizes of the batches it acknowledges and hands out again."""

from __future__ import annotations

from pathlib import Path

from gateway.delivery.outbox import Kind, Outbox, OutboxRecord
from tools.bench.memtrace import sqlite_memory_used


def _cycle(outbox: Outbox, count: int, first_seq: int) -> None:
    """Store ``count`` polls held, give them back, take them again (by id), acknowledge them."""
    records = [OutboxRecord("lamp-1", first_seq + i, Kind.READING, float(first_seq + i), b"p" * 40)
               for i in range(count)]
    held = outbox.put_held(records)
    outbox.release([e.id for e in held])
    again = outbox.take(count)
    assert [e.id for e in again] == [e.id for e in held]
    assert outbox.ack(e.id for e in again) == count


def test_batches_of_new_sizes_do_not_grow_sqlite_memory(tmp_path: Path) -> None:
    """Acks and re-takes of 61..120 ids after 1..60 add no prepared statements (one SQL text for any count).

    With one ``?`` per id, each new count was another statement kept in sqlite3's cache: about
    1.5 MiB more here, and a creep of a running gateway's resident memory.
    """
    outbox = Outbox(tmp_path / "outbox.db", synchronous="NORMAL")
    try:
        seq = 0
        for count in range(1, 61):
            _cycle(outbox, count, seq)
            seq += count
        before = sqlite_memory_used()
        assert before > 0, "SQLite's memory counter is not readable here"
        for count in range(61, 121):
            _cycle(outbox, count, seq)
            seq += count
        grown = sqlite_memory_used() - before
        assert outbox.counters()[0] == 0
    finally:
        outbox.close()
    assert grown < 256 * 1024, f"SQLite's heap grew by {grown / 1024:.0f} KiB"
