"""The outbox's two lanes (live records held at put, the backlog below a mark), its session counter and cursors."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gateway.delivery.outbox import Kind, Outbox, OutboxRecord
from gateway.delivery.outbox_thread import AsyncOutbox

READING, EVENT = Kind.READING, Kind.EVENT


def rec(seq: int, kind: int = READING, node: str = "lamp-1") -> OutboxRecord:
    return OutboxRecord(node, seq, kind, float(seq), b"%s/%d" % (node.encode(), seq))


def seqs(entries: list) -> list[int]:
    return [e.seq for e in entries]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "outbox.db"


def test_put_held_stores_and_hands_out_in_one_step(path: Path) -> None:
    """Held entries are in flight: take() passes over them; acked they are gone, released they come back."""
    with Outbox(path) as ob:
        ob.put_many([rec(1), rec(2)])
        held = ob.put_held([rec(3), rec(4), rec(5)])
        assert seqs(held) == [3, 4, 5]
        assert ob.in_flight() == 3
        assert seqs(ob.take(10)) == [1, 2]
        ob.ack([held[0].id])
        ob.release([held[1].id])
        assert seqs(ob.take(10)) == [4]
        assert ob.depth()[0] == 4
    with Outbox(path) as ob:  # a restart: everything unacknowledged is handed out again, in order
        assert seqs(ob.take(10)) == [1, 2, 4, 5]


def test_put_held_skips_duplicates_and_returns_only_what_was_stored(path: Path) -> None:
    with Outbox(path) as ob:
        first = ob.put_held([rec(1), rec(2)])
        again = ob.put_held([rec(2), rec(3), rec(3)])
        assert seqs(first) == [1, 2]
        assert seqs(again) == [3]
        assert ob.duplicates() == 2
        assert ob.stored() == 3


def test_take_below_a_mark_leaves_younger_entries_alone(path: Path) -> None:
    """The backlog lane: max_id confines take() to what was stored before the mark, given-back entries too."""
    with Outbox(path) as ob:
        ob.put_many([rec(i) for i in range(5)])
        mark = ob.last_id()
        ob.put_many([rec(i) for i in range(5, 8)])
        first = ob.take(3, max_id=mark)
        assert seqs(first) == [0, 1, 2]
        ob.release([first[1].id])
        assert seqs(ob.take(10, max_id=mark)) == [1, 3, 4]
        assert ob.take(10, max_id=mark) == []
        assert seqs(ob.take(10)) == [5, 6, 7]


def test_the_backlog_lane_never_hands_out_a_live_entry_twice(path: Path) -> None:
    """Live entries released by a lost connection join the backlog once, whichever lane reaches them first."""
    with Outbox(path) as ob:
        ob.put_many([rec(0)])
        live = ob.put_held([rec(1), rec(2), rec(3)])
        ob.release([e.id for e in live])
        got = ob.take(2) + ob.take(10) + ob.take(10)
        assert seqs(got) == [0, 1, 2, 3]
        assert len({e.id for e in got}) == 4


def test_the_session_counter_only_grows_across_restarts(path: Path) -> None:
    with Outbox(path) as ob:
        assert ob.session() == 0
        assert ob.next_session() == 1
        assert ob.next_session() == 2
    with Outbox(path) as ob:
        assert ob.session() == 2
        assert ob.next_session() == 3


def test_event_cursors_are_written_with_the_events(path: Path) -> None:
    """A node's event cursor moves in the same transaction as its events (and alone, when all were seen)."""
    with Outbox(path) as ob:
        ob.put_many([rec(7, EVENT, "lamp-2"), rec(8, EVENT, "lamp-2")], cursors={"lamp-2": 8})
        ob.put_many([rec(8, EVENT, "lamp-2")], cursors={"lamp-2": 9})  # a duplicate, yet the cursor moves
        assert ob.cursors() == {"lamp-2": 9}
    with Outbox(path) as ob:
        assert ob.cursors() == {"lamp-2": 9}
        assert [(e.seq, e.kind) for e in ob.take(10)] == [(7, EVENT), (8, EVENT)]


def test_a_cursor_does_not_move_when_its_events_found_no_room(path: Path) -> None:
    """A full disk refuses the events: the cursor stays, so the events are read from the node again."""
    with Outbox(path) as ob:
        ob.put_many([rec(1, EVENT, "lamp-2")], cursors={"lamp-2": 1})
        ob.take(10)  # in flight, so nothing can be evicted
        pages = ob._db.execute("PRAGMA page_count").fetchone()[0]
        ob._db.execute(f"PRAGMA max_page_count = {pages}")
        big = [OutboxRecord("lamp-2", s, EVENT, 0.0, b"x" * 3000) for s in (2, 3)]
        assert ob.put_many(big, cursors={"lamp-2": 3}) == 0
        assert ob.cursors() == {"lamp-2": 1}
        assert ob.dropped()[EVENT] == 2


def test_a_schema_1_file_is_used_as_it_is(path: Path) -> None:
    """Files from before the index was dropped open, store and hand out as before (unique index and all)."""
    db = sqlite3.connect(path)
    db.executescript(
        """CREATE TABLE records (id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, seq INTEGER NOT NULL,
             kind INTEGER NOT NULL, created REAL NOT NULL, payload BLOB NOT NULL,
             attempts INTEGER NOT NULL DEFAULT 0, historical INTEGER NOT NULL DEFAULT 0, UNIQUE (node, seq, kind));
           CREATE INDEX records_by_kind ON records (kind);
           CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
           PRAGMA application_id = 1397051202; PRAGMA user_version = 1;"""
    )
    db.execute("INSERT INTO records (node, seq, kind, created, payload) VALUES ('lamp-1', 1, 0, 1.0, x'00')")
    db.commit()
    db.close()
    with Outbox(path) as ob:
        assert ob.put_many([rec(1), rec(2)]) == 1
        assert seqs(ob.take(10)) == [1, 2]


def test_the_async_outbox_offers_the_lanes_too(path: Path) -> None:
    async def main() -> None:
        async with await AsyncOutbox.open(path) as ob:
            await ob.put_many([rec(1)])
            mark = await ob.last_id()
            held = await ob.put_held([rec(2)])
            assert seqs(await ob.take(5, max_id=mark)) == [1]
            await ob.ack([held[0].id])
            assert await ob.next_session() == 1
            assert await ob.stored() == 2
            assert await ob.cursors() == {}

    asyncio.run(main())


def test_schema_descriptions_are_kept_once_each(path: Path) -> None:
    with Outbox(path) as ob:
        ob.remember_schemas({b"abcd": b"first", b"efgh": b"other"})
        ob.remember_schemas({b"abcd": b"changed?"})  # an id names one description forever
    with Outbox(path) as ob:
        assert ob.schemas() == {b"abcd": b"first", b"efgh": b"other"}
