"""The durable outbox on a real SQLite file: order, in-flight, restart, retention, full disk, bad files."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from gateway.delivery.outbox import ROW_OVERHEAD, SCHEMA_VERSION, Kind, Outbox, OutboxError, OutboxRecord
from gateway.delivery.outbox_thread import AsyncOutbox

READING, EVENT = Kind.READING, Kind.EVENT


def rec(
    seq: int, kind: int = READING, node: str = "lamp-1", size: int = 20, created: float | None = None
) -> OutboxRecord:
    """A record whose payload names it, padded to ``size`` bytes."""
    payload = f"{node}/{seq}/{kind}".encode().ljust(size, b".")
    return OutboxRecord(node, seq, kind, float(seq) if created is None else created, payload)


def seqs(entries: list) -> list[int]:
    return [e.seq for e in entries]


def row_bytes(r: OutboxRecord) -> int:
    return len(r.payload) + len(r.node) + ROW_OVERHEAD


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


def test_put_take_ack_round_trip(path: Path) -> None:
    """What goes in comes out with its fields; acked entries leave the table."""
    with Outbox(path) as ob:
        records = [rec(i) for i in range(5)]
        assert ob.put_many(records) == 5
        assert ob.depth() == (5, sum(row_bytes(r) for r in records))
        taken = ob.take(10)
        assert [(e.node, e.seq, e.kind, e.created, e.payload) for e in taken] == [tuple(r[:5]) for r in records]
        assert all(e.attempts == 0 and not e.historical for e in taken)
        assert ob.in_flight() == 5
        assert ob.ack([e.id for e in taken[:3]]) == 3
        assert ob.depth() == (2, sum(row_bytes(r) for r in records[3:]))
        assert ob.in_flight() == 2
        assert ob.take(10) == []


def test_an_empty_put_and_a_zero_take_do_nothing(path: Path) -> None:
    with Outbox(path) as ob:
        assert ob.put_many([]) == 0
        ob.put_many([rec(1)])
        assert ob.take(0) == []
        assert ob.depth()[0] == 1


def test_take_is_fifo_by_arrival_across_kinds_and_nodes(path: Path) -> None:
    """Oldest first, whatever the kind, node or sequence number."""
    with Outbox(path) as ob:
        ob.put_many([rec(9, EVENT, "b"), rec(1, READING, "a"), rec(5, EVENT, "a")])
        ob.put_many([rec(2, READING, "c")])
        got = ob.take(2) + ob.take(2)
        assert [(e.node, e.seq) for e in got] == [("b", 9), ("a", 1), ("a", 5), ("c", 2)]
        assert [e.id for e in got] == sorted(e.id for e in got)


def test_duplicates_are_stored_once_and_counted_persistently(path: Path) -> None:
    """A seq among the recent ones of its node and kind is not stored again; an event and a reading may share one."""
    with Outbox(path) as ob:
        assert ob.put_many([rec(1), rec(2), rec(1, EVENT)]) == 3
        assert ob.put_many([rec(2), rec(3), rec(1), rec(1, node="lamp-2")]) == 2
        assert ob.duplicates() == 2
        assert ob.depth() == (5, 5 * row_bytes(rec(1)))
    with Outbox(path) as ob:
        assert ob.duplicates() == 2
        assert ob.put_many([rec(3)]) == 0
        assert ob.duplicates() == 3
        assert sorted((e.node, e.seq, e.kind) for e in ob.take(10)) == [
            ("lamp-1", 1, 0), ("lamp-1", 1, 1), ("lamp-1", 2, 0), ("lamp-1", 3, 0), ("lamp-2", 1, 0)
        ]


def test_in_flight_entries_are_not_handed_out_twice(path: Path) -> None:
    with Outbox(path) as ob:
        ob.put_many([rec(i) for i in range(6)])
        first = ob.take(4)
        second = ob.take(4)
        assert seqs(first) == [0, 1, 2, 3]
        assert seqs(second) == [4, 5]
        assert ob.take(4) == []


def test_nack_counts_an_attempt_and_the_entry_comes_back_first(path: Path) -> None:
    with Outbox(path) as ob:
        ob.put_many([rec(i) for i in range(6)])
        taken = ob.take(3)
        assert ob.nack([taken[1].id, 12345]) == 1  # an id not in flight is ignored
        again = ob.take(3)
        assert [(e.seq, e.attempts) for e in again] == [(1, 1), (3, 0), (4, 0)]
        assert ob.nack([again[0].id]) == 1
        assert [(e.seq, e.attempts) for e in ob.take(1)] == [(1, 2)]
        assert ob.nack([taken[0].id, taken[0].id]) == 1
        assert ob.nack([taken[0].id]) == 0  # no longer in flight


def test_release_gives_back_without_counting_an_attempt(path: Path) -> None:
    with Outbox(path) as ob:
        ob.put_many([rec(i) for i in range(3)])
        taken = ob.take(3)
        assert ob.release([e.id for e in taken[1:]]) == 2
        assert [(e.seq, e.attempts) for e in ob.take(3)] == [(1, 0), (2, 0)]


def test_exclude_ids_skips_entries_that_stay_available(path: Path) -> None:
    """Skipped entries (new or given back) are not taken, not lost, and keep their place in line."""
    with Outbox(path) as ob:
        ob.put_many([rec(i) for i in range(8)])
        ids = {e.seq: e.id for e in ob.take(8)}
        ob.release(ids.values())
        got = ob.take(3, exclude_ids=[ids[0], ids[2]])
        assert seqs(got) == [1, 3, 4]
        ob.put_many([rec(i) for i in range(8, 12)])
        assert seqs(ob.take(20, exclude_ids=[ids[5]])) == [0, 2, 6, 7, 8, 9, 10, 11]
        assert seqs(ob.take(20)) == [5]
    with Outbox(path) as ob:
        ids = [e.id for e in ob.take(20)]
    with Outbox(path) as ob:  # after a restart nothing was handed out: the exclusions hit new rows
        assert seqs(ob.take(3, exclude_ids=[ids[0], ids[2]])) == [1, 3, 4]
        assert seqs(ob.take(2, exclude_ids=[ids[0], ids[2]])) == [5, 6]
        assert seqs(ob.take(20)) == [0, 2, 7, 8, 9, 10, 11]


def test_a_restart_hands_in_flight_entries_out_again(path: Path) -> None:
    """Taken but not acknowledged when the process ended: back in line, same ids, acked ones gone."""
    with Outbox(path) as ob:
        ob.put_many([rec(i) for i in range(6)])
        taken = ob.take(4)
        ob.ack([taken[0].id])
        ob.nack([taken[1].id])
        in_flight = {e.id: e.seq for e in taken[1:]}
    with Outbox(path) as ob:
        assert ob.depth()[0] == 5
        assert ob.in_flight() == 0
        again = ob.take(10)
        assert seqs(again) == [1, 2, 3, 4, 5]
        assert {e.id: e.seq for e in again[:3]} == in_flight
        assert [e.attempts for e in again] == [1, 0, 0, 0, 0]


def test_ids_are_never_reused_after_the_newest_entry_is_acked(path: Path) -> None:
    """AUTOINCREMENT: a new record never inherits an acked id, so nothing hides behind the take mark."""
    with Outbox(path) as ob:
        ob.put_many([rec(1), rec(2)])
        taken = ob.take(2)
        ob.ack([e.id for e in taken])
        ob.put_many([rec(3)])
        (new,) = ob.take(5)
        assert new.seq == 3
        assert new.id > taken[-1].id
        ob.ack([taken[-1].id])  # a stale ack of the old id cannot touch the new record
        assert ob.depth()[0] == 1
    with Outbox(path) as ob:
        ob.ack([new.id])
        ob.put_many([rec(4)])
        assert ob.take(1)[0].id > new.id


def test_ack_of_unknown_or_repeated_ids_is_harmless(path: Path) -> None:
    with Outbox(path) as ob:
        ob.put_many([rec(1), rec(2)])
        e = ob.take(1)[0]
        assert ob.ack([e.id, 999]) == 1
        assert ob.ack([e.id]) == 0
        assert ob.ack([]) == 0
        assert ob.depth()[0] == 1


def test_ack_of_an_entry_given_back_removes_it_from_the_line(path: Path) -> None:
    with Outbox(path) as ob:
        ob.put_many([rec(i) for i in range(3)])
        taken = ob.take(3)
        ob.nack([e.id for e in taken])
        ob.ack([taken[1].id])  # a late broker acknowledgement after a nack
        assert seqs(ob.take(5)) == [0, 2]


def test_historical_marking_by_creation_time_or_at_put(path: Path) -> None:
    with Outbox(path) as ob:
        ob.put_many([rec(1, created=100.0), rec(2, created=200.0), rec(3, created=300.0)])
        ob.put_many([rec(4, created=400.0)._replace(historical=True)])
        got = ob.take(10, historical_before=250.0)
        assert [(e.seq, e.historical) for e in got] == [(1, True), (2, True), (3, False), (4, True)]
        ob.release([e.id for e in got])
        assert [e.historical for e in ob.take(10)] == [False, False, False, True]


def test_retention_drops_the_oldest_readings_first_then_events(path: Path) -> None:
    """Over budget: oldest readings go; events only once no reading is left; counts survive a restart."""
    one = row_bytes(rec(0))
    with Outbox(path, budget_bytes=10 * one) as ob:
        ob.put_many([rec(0, EVENT), rec(1), rec(2, EVENT), rec(3)] + [rec(i) for i in range(4, 10)])
        assert ob.depth() == (10, 10 * one)
        assert ob.dropped() == {READING: 0, EVENT: 0}
        assert ob.put_many([rec(10), rec(11, EVENT)]) == 2
        assert ob.dropped() == {READING: 2, EVENT: 0}
        assert ob.depth() == (10, 10 * one)
        assert ob.put_many([rec(i, EVENT) for i in range(12, 18)]) == 6
        assert ob.dropped() == {READING: 8, EVENT: 0}  # readings 4..9 went, reading 10 is left
        assert ob.put_many([rec(18, EVENT), rec(19, EVENT)]) == 2
        assert ob.dropped() == {READING: 9, EVENT: 1}  # the last reading, then the oldest event
        assert ob.depth() == (10, 10 * one)
        assert seqs(ob.take(20)) == [2, *range(11, 20)]
    with Outbox(path, budget_bytes=10 * one) as ob:
        assert ob.dropped() == {READING: 9, EVENT: 1}
        assert ob.depth() == (10, 10 * one)


def test_retention_never_evicts_entries_in_flight(path: Path) -> None:
    one = row_bytes(rec(0))
    with Outbox(path, budget_bytes=4 * one) as ob:
        ob.put_many([rec(i) for i in range(4)])
        in_flight = ob.take(2)
        assert ob.put_many([rec(4), rec(5)]) == 2
        assert ob.dropped()[READING] == 2
        assert seqs(ob.take(10)) == [4, 5]
        assert ob.ack([e.id for e in in_flight]) == 2  # still there to be acked


def test_a_batch_larger_than_the_budget_keeps_its_newest_records(path: Path) -> None:
    one = row_bytes(rec(0))
    with Outbox(path, budget_bytes=3 * one) as ob:
        assert ob.put_many([rec(i) for i in range(10)]) == 3
        assert ob.dropped()[READING] == 7
        assert seqs(ob.take(10)) == [7, 8, 9]


def _fill_to_the_page_limit(ob: Outbox, extra_blocks: int) -> None:
    """Simulate a disk with ``extra_blocks`` 4 KiB blocks left (max_page_count is per connection)."""
    pages = ob._db.execute("PRAGMA page_count").fetchone()[0]
    page_size = ob._db.execute("PRAGMA page_size").fetchone()[0]
    ob._db.execute(f"PRAGMA max_page_count = {pages + extra_blocks * 4096 // page_size}")


def test_a_full_disk_never_raises_and_every_record_is_stored_or_counted(path: Path) -> None:
    """Forty batches into 32 KiB of free disk: nothing raises, stored + dropped = offered, the file stays sound."""
    with Outbox(path) as ob:
        _fill_to_the_page_limit(ob, 8)
        offered = 0
        for batch in range(40):
            records = [rec(batch * 100 + i, READING if i % 10 else EVENT, size=200) for i in range(100)]
            offered += len(records)
            ob.put_many(records)
        dropped = ob.dropped()
        count, _ = ob.depth()
        assert dropped[READING] > 0
        assert count + dropped[READING] + dropped[EVENT] == offered
        assert count == ob._db.execute("SELECT count(*) FROM records").fetchone()[0]
        assert seqs(ob.take(5000))[-1] == 3999  # the newest made it in
        assert ob._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_full_disk_with_nothing_to_evict_returns_what_it_stored(path: Path) -> None:
    """Everything stored is in flight: put_many stores what fits and counts the rest, by kind."""
    with Outbox(path) as ob:
        ob.put_many([rec(i, size=200) for i in range(10)])
        ob.take(10)
        _fill_to_the_page_limit(ob, 2)
        stored = 0
        for batch in range(1, 20):
            records = [rec(batch * 100 + i, READING if i % 2 else EVENT, size=200) for i in range(100)]
            got = ob.put_many(records)
            assert len(ob.take(1000)) == got  # in flight, so the next batch cannot evict them
            stored += got
            assert ob.depth()[0] == 10 + stored
        dropped = ob.dropped()
        assert 0 < stored < 1900
        assert dropped[READING] + dropped[EVENT] == 1900 - stored
        assert dropped[EVENT] > 0
        assert ob._db.execute("SELECT count(*) FROM records").fetchone()[0] == 10 + stored


def test_a_full_disk_drops_old_readings_to_keep_new_records(path: Path) -> None:
    """With readings stored, a full disk makes room as retention does: the newest batch gets in."""
    with Outbox(path) as ob:
        ob.put_many([rec(i, size=200) for i in range(200)])
        _fill_to_the_page_limit(ob, 0)
        newest = [rec(1000 + i, size=200) for i in range(50)]
        assert ob.put_many(newest) == 50
        assert ob.dropped()[READING] >= 50
        assert ob.dropped()[EVENT] == 0
        assert seqs(ob.take(1000))[-50:] == [r.seq for r in newest]


def test_a_full_disk_still_lets_acks_free_space(path: Path) -> None:
    """Only events stored and the disk full: events are sacrificed last; acking makes room again."""
    with Outbox(path) as ob:
        ob.put_many([rec(i, EVENT, size=200) for i in range(100)])
        taken = ob.take(100)  # in flight: not evictable
        _fill_to_the_page_limit(ob, 0)
        assert ob.put_many([rec(500 + i, size=200) for i in range(100)]) < 100
        ob.ack([e.id for e in taken])
        assert ob.put_many([rec(1000 + i, size=200) for i in range(20)]) == 20
        assert ob.dropped()[EVENT] == 0


def test_counters_written_after_a_full_disk_survive_a_restart(path: Path) -> None:
    with Outbox(path) as ob:
        taken_ids = []
        ob.put_many([rec(i, EVENT, size=200) for i in range(50)])
        taken_ids = [e.id for e in ob.take(50)]
        _fill_to_the_page_limit(ob, 0)
        ob.put_many([rec(100 + i, size=200) for i in range(30)])
        lost = ob.dropped()
        assert lost[READING] > 0
        ob.ack(taken_ids)  # frees room, and the counters ride along with the delete
    with Outbox(path) as ob:
        assert ob.dropped() == lost
        assert ob.depth()[0] == 30 - lost[READING]


class FullDisk:
    """A connection whose DELETEs fail as on a full disk (max_page_count cannot refuse a delete)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.full = True

    def _check(self, sql: str) -> None:
        if self.full and sql.lstrip().startswith("DELETE"):
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        self._check(sql)
        return self.db.execute(sql, *args)

    def executemany(self, sql: str, *args: object) -> sqlite3.Cursor:
        self._check(sql)
        return self.db.executemany(sql, *args)

    def __getattr__(self, name: str) -> object:
        return getattr(self.db, name)


def test_an_ack_the_disk_refuses_withdraws_the_entries_and_is_retried(path: Path) -> None:
    """Acked entries whose delete fails are not handed out again; the next write deletes them."""
    with Outbox(path) as ob:
        ob.put_many([rec(i) for i in range(4)])
        taken = ob.take(2)
        disk = FullDisk(ob._db)
        ob._db = disk  # type: ignore[assignment]
        assert ob.ack([e.id for e in taken]) == 0
        assert ob.depth()[0] == 4
        assert ob.in_flight() == 0
        assert seqs(ob.take(10)) == [2, 3]
        assert ob.put_many([rec(9)]) == 0  # the pending delete fails again, so the put waits with it
        assert ob.dropped()[READING] == 1
        disk.full = False
        assert ob.put_many([rec(10)]) == 1
        assert ob.depth()[0] == 3
        assert ob._db.execute("SELECT count(*) FROM records").fetchone()[0] == 3


def test_acks_still_pending_at_a_restart_are_sent_again(path: Path) -> None:
    """At-least-once: an ack that never reached the disk means the entry is delivered once more."""
    ob = Outbox(path)
    ob.put_many([rec(i) for i in range(3)])
    taken = ob.take(3)
    ob._db = FullDisk(ob._db)  # type: ignore[assignment]
    ob.ack([e.id for e in taken])
    ob.close()  # tries the delete once more, in vain
    with Outbox(path) as ob:
        assert seqs(ob.take(10)) == [0, 1, 2]


def test_pending_acks_are_written_at_close(path: Path) -> None:
    ob = Outbox(path)
    ob.put_many([rec(i) for i in range(3)])
    taken = ob.take(3)
    disk = FullDisk(ob._db)
    ob._db = disk  # type: ignore[assignment]
    ob.ack([e.id for e in taken])
    disk.full = False
    ob.close()
    with Outbox(path) as ob:
        assert ob.depth() == (0, 0)


def test_a_file_of_garbage_is_refused_with_its_path(path: Path) -> None:
    path.write_bytes(b"this is not a database, it is a shopping list\n" * 200)
    with pytest.raises(OutboxError) as info:
        Outbox(path)
    assert str(path) in str(info.value)
    assert info.value.path == path
    assert "not an SQLite database" in info.value.problem


def test_another_sqlite_database_is_refused(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE lamps (id INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(OutboxError, match=r"not a streetedge outbox.*lamps") as info:
        Outbox(path)
    assert str(path) in str(info.value)


def test_a_newer_schema_is_refused(path: Path) -> None:
    Outbox(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(OutboxError, match=f"schema version {SCHEMA_VERSION + 1} is newer") as info:
        Outbox(path)
    assert str(path) in str(info.value)


def test_an_outbox_with_its_schema_damaged_is_refused(path: Path) -> None:
    Outbox(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE meta")
    db.close()
    with pytest.raises(OutboxError, match="incomplete outbox schema"):
        Outbox(path)


def test_an_empty_file_becomes_an_outbox(path: Path) -> None:
    path.write_bytes(b"")
    with Outbox(path) as ob:
        assert ob.put_many([rec(1)]) == 1
    with Outbox(path) as ob:
        assert seqs(ob.take(1)) == [1]


def test_a_second_process_cannot_open_an_outbox_in_use(path: Path) -> None:
    """One gateway per outbox: a second opener gets a clear error, not a shared queue."""
    with Outbox(path) as ob:
        ob.put_many([rec(1)])
        with pytest.raises(OutboxError, match="in use") as info:
            Outbox(path)
        assert str(path) in str(info.value)
    with Outbox(path) as ob:
        assert ob.depth()[0] == 1


def test_bad_arguments_are_refused(path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Outbox(path, synchronous="OFF")
    with pytest.raises(ValueError, match="budget"):
        Outbox(path, budget_bytes=0)
    with Outbox(path, synchronous="full") as ob:
        assert ob._db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert ob._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(ValueError, match="kind"):
            ob.put_many([rec(1), OutboxRecord("n", 2, 7, 0.0, b"")])
        assert ob.depth()[0] == 0  # validated before anything is written
    ob.close()  # idempotent
    with pytest.raises(OutboxError, match="closed"):
        ob.take(1)


def test_the_async_wrapper_runs_everything_in_one_thread(path: Path) -> None:
    """All calls land in one writer thread that is not the event loop's."""

    async def main() -> None:
        ob = await AsyncOutbox.open(path, budget_bytes=1 << 20)
        threads = set()
        real_put = ob._core.put_many

        def spy(records: list[OutboxRecord], **kwargs: object) -> int:
            threads.add(threading.get_ident())
            return real_put(records, **kwargs)  # type: ignore[arg-type]

        ob._core.put_many = spy  # type: ignore[method-assign]
        async with ob:
            await asyncio.gather(*(ob.put_many([rec(b * 10 + i) for i in range(10)]) for b in range(5)))
            assert await ob.depth() == (50, 50 * row_bytes(rec(0)))
            taken = await ob.take(20)
            assert seqs(taken) == list(range(20))
            assert await ob.in_flight() == 20
            assert await ob.nack([taken[0].id]) == 1
            assert await ob.release([taken[1].id]) == 1
            assert await ob.ack([e.id for e in taken[2:]]) == 18
            assert seqs(await ob.take(2)) == [0, 1]
            assert await ob.dropped() == {READING: 0, EVENT: 0}
            assert await ob.duplicates() == 0
        assert len(threads) == 1
        assert threading.get_ident() not in threads

    asyncio.run(main())


def test_a_cancelled_async_take_loses_nothing(path: Path) -> None:
    """Cancelled while queued: takes nothing. Cancelled while taking: its entries are released when done."""

    async def main() -> None:
        async with await AsyncOutbox.open(path) as ob:
            await ob.put_many([rec(i) for i in range(5)])
            gate = threading.Event()
            ob._executor.submit(gate.wait)  # hold the writer thread: the take waits in the queue
            task = asyncio.ensure_future(ob.take(3))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gate.set()
            assert seqs(await ob.take(5)) == [0, 1, 2, 3, 4]
            assert await ob.release(range(100)) == 5

            started, go = threading.Event(), threading.Event()
            real_take = ob._core.take

            def slow_take(*args: object, **kwargs: object) -> list:
                started.set()
                go.wait()
                return real_take(*args, **kwargs)  # type: ignore[arg-type]

            ob._core.take = slow_take  # type: ignore[method-assign]
            task = asyncio.ensure_future(ob.take(3))
            await asyncio.get_running_loop().run_in_executor(None, started.wait)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            ob._core.take = real_take  # type: ignore[method-assign]
            go.set()
            for _ in range(500):
                if await ob.in_flight() == 0:
                    break
                await asyncio.sleep(0.01)
            assert seqs(await ob.take(5)) == [0, 1, 2, 3, 4]

    asyncio.run(main())


def test_the_async_open_reports_bad_files(path: Path) -> None:
    path.write_bytes(b"\x00garbage" * 1000)

    async def main() -> None:
        with pytest.raises(OutboxError, match="not an SQLite database"):
            await AsyncOutbox.open(path)

    asyncio.run(main())
