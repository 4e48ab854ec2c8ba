"""How records get into the outbox's table and out of it: transactions, duplicates, the budget, a full disk.

:class:`Writing` is the write side of :class:`gateway.delivery.outbox.Outbox`
(its base class): it owns the counters that every write transaction keeps in
step with the table.

Duplicates. A record whose ``seq`` is among the last :data:`RECENT` seqs of
its node and kind (stored by this process, or still in the file when it was
opened) is not stored again, and is counted in :meth:`Outbox.duplicates`: a
node polled faster than it samples, an event log read twice.

Retention. ``budget_bytes`` bounds the logical size of the outbox: the sum over
rows of ``len(payload) + len(node) + ROW_OVERHEAD``. ``ROW_OVERHEAD`` (24) was
measured here with 1 KiB pages: for payloads up to ~120 bytes (a poll record is
~40-60) the file's used pages stay within it; a 250-byte payload wastes ~90
bytes of page space, a 1 kB one ~150. A logical figure, unlike
page counts, shrinks as soon as rows are deleted and lets eviction know how
much it freed; the WAL comes on top (truncated to ``journal_size_limit``).
When a put takes the outbox over budget the oldest readings not in flight are
deleted first, events only when no such reading is left; every deleted record
is counted in :meth:`Outbox.dropped` (persisted). Entries in flight are never
evicted, so the budget can be exceeded by at most what is in flight.

Full disk. ``SQLITE_FULL`` ("database or disk is full") never reaches the
caller: put_many evicts as under the budget rule and retries, then stores what
the disk takes one record at a time and counts the rest as dropped. An ack that
cannot be written keeps its entries out of circulation and retries the delete
with the next write.
"""

from __future__ import annotations

import functools
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from gateway.delivery.handout import COLUMNS as _COLUMNS
from gateway.delivery.handout import IN_IDS, ids_param
from gateway.delivery.handout import Row as _Row
from gateway.delivery.outbox_file import (
    CURSOR,
    INSERT,
    PAGE_SIZE,
    RECENT,
    ROW_BYTES,
    ROW_OVERHEAD,
    failure,
    is_full,
    rollback,
    sequence,
)
from gateway.delivery.records import Entry, Kind, OutboxError, OutboxRecord

_T = TypeVar("_T")


class Writing:
    """The write side of the outbox; its state is set up by :class:`~gateway.delivery.outbox.Outbox`."""

    path: Path
    budget_bytes: int
    _db: sqlite3.Connection
    _inflight: set[int]
    _gone: set[int]  # acked, delete not yet on disk (full disk)
    _recent: dict[tuple[str, int], deque[int]]
    _dropped: dict[Kind, int]
    _duplicates: int
    _cursors: dict[str, int]
    _dirty: bool  # counters changed since they were last written
    _lazy: bool  # the duplicates count changed: written with the next write, or at close
    _count: int
    _bytes: int
    _last_id: int
    _closed: bool

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(self.path, "closed")

    def _entry(self, row: _Row, historical_before: float | None) -> Entry:
        rid, node, seq, kind, created, payload, attempts, hist = row
        old = bool(hist) or (historical_before is not None and created < historical_before)
        return Entry(rid, node, seq, kind, created, payload, attempts, old)

    def _remember(self, node: str, kind: int, seq: int) -> None:
        recent = self._recent.get((node, kind))
        if recent is None:
            recent = self._recent[(node, kind)] = deque(maxlen=RECENT)
        recent.append(seq)

    def _write(self, body: Callable[[], _T]) -> _T:
        """Run ``body`` in one write transaction with the counters; undo memory state if it fails."""
        saved = (self._count, self._bytes, self._last_id, dict(self._dropped), self._duplicates, self._dirty)
        gone = set(self._gone)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            result = body()
            if self._dirty:
                rows = [(f"dropped.{k.name.lower()}", v) for k, v in self._dropped.items()]
                rows.append(("duplicates", self._duplicates))
                self._db.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._count, self._bytes, self._last_id, self._dropped, self._duplicates, self._dirty = saved
            self._gone = gone
            rollback(self._db)
            raise
        if self._dirty:
            self._lazy = False
        self._dirty = False
        return result

    def _put(
        self, records: Iterable[OutboxRecord], cursors: Mapping[str, int] | None, *, hold: bool
    ) -> list[Entry]:
        """Validate, drop duplicates, store; return the stored entries (marked in flight with ``hold``)."""
        self._check_open()
        recs = records if isinstance(records, list) else list(records)
        for r in recs:
            if r.kind not in (Kind.READING, Kind.EVENT):
                raise ValueError(f"record {r.node}/{r.seq}: kind must be 0 (reading) or 1 (event), not {r.kind!r}")
        fresh: list[OutboxRecord] = []
        seen: set[tuple[str, int, int]] = set()
        for r in recs:
            key = (r.node, r.seq, r.kind)
            recent = self._recent.get((r.node, r.kind))
            if key in seen or (recent is not None and r.seq in recent):
                continue
            seen.add(key)
            fresh.append(r)
        if len(fresh) < len(recs):
            self._duplicates += len(recs) - len(fresh)
            self._lazy = True
        marks: Mapping[str, int] = dict(cursors or {})
        if not fresh and not marks:
            return []
        size = sum(ROW_OVERHEAD + len(r.payload) + len(r.node) for r in fresh)
        try:
            rows = self._write(functools.partial(self._insert, fresh, size, marks))
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise failure(self.path, "put", exc) from exc
            rows, marks = self._put_on_full_disk(fresh, size, marks)
        self._cursors.update(marks)
        entries = [self._entry(row, None) for row in rows]
        for e in entries:
            self._remember(e.node, e.kind, e.seq)
        if hold:
            self._inflight.update(e.id for e in entries)
        return entries

    def _insert(self, recs: list[OutboxRecord], size: int, cursors: Mapping[str, int]) -> list[_Row]:
        """INSERT ``recs`` (``size`` logical bytes), enforce the budget, write cursors; return the stored rows."""
        if self._gone:  # acks that a full disk refused earlier
            self._delete_gone()
        if cursors:
            self._db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(CURSOR + node, seq) for node, seq in cursors.items()],
            )
        if not recs:
            return []
        before = self._last_id
        inserted = self._db.executemany(INSERT, recs).rowcount
        self._last_id = sequence(self._db)  # an ignored insert (schema 1) still uses up an id
        if inserted < len(recs):
            self._duplicates += len(recs) - inserted
            self._dirty = True
            (total,) = self._db.execute(f"SELECT total({ROW_BYTES}) FROM records WHERE id > ?", (before,)).fetchone()
            size = int(total) + ROW_OVERHEAD * inserted
        self._count += inserted
        self._bytes += size
        if self._bytes > self.budget_bytes:
            self._evict(self._bytes - self.budget_bytes)
        rows: list[_Row] = self._db.execute(
            f"SELECT {_COLUMNS} FROM records WHERE id > ? ORDER BY id", (before,)
        ).fetchall()
        return rows

    def _evict(self, need: int) -> None:
        """Delete the oldest readings, then events, not in flight, until ``need`` bytes are freed."""
        freed = 0
        for kind in (Kind.READING, Kind.EVENT):
            victims: list[int] = []
            # No index on kind: readings are the bulk and the oldest are met first; events are few.
            cur = self._db.execute(f"SELECT id, kind, {ROW_BYTES} FROM records ORDER BY id")
            for rid, k, nbytes in cur:
                if k != kind or rid in self._inflight or rid in self._gone:
                    continue
                victims.append(rid)
                freed += nbytes + ROW_OVERHEAD
                if freed >= need:
                    break
            cur.close()
            if victims:
                self._db.executemany("DELETE FROM records WHERE id = ?", [(v,) for v in victims])
                self._dropped[kind] += len(victims)
                self._dirty = True
                self._count -= len(victims)
            if freed >= need:
                break
        self._bytes -= freed

    def _put_on_full_disk(
        self, recs: list[OutboxRecord], size: int, cursors: Mapping[str, int]
    ) -> tuple[list[_Row], Mapping[str, int]]:
        """The disk refused a put: make room as retention would, retry, then store what fits one by one.

        Returns the stored rows and the cursors written (none unless the last record got in).
        """
        try:  # deleting old rows frees whole pages that new rows can reuse; pages are never full, so twice
            self._write(functools.partial(self._evict, 2 * size + 4 * PAGE_SIZE))
            return self._write(functools.partial(self._insert, recs, size, cursors)), cursors
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise failure(self.path, "put", exc) from exc
        rows: list[_Row] = []
        written: Mapping[str, int] = {}
        if not recs:
            return rows, written
        for i, r in enumerate(recs):
            try:
                one = ROW_OVERHEAD + len(r.payload) + len(r.node)
                # the cursors ride with the last record: events stored, cursor follows; never ahead
                marks = cursors if i == len(recs) - 1 else {}
                rows += self._write(functools.partial(self._insert, [r], one, marks))
                written = marks
            except sqlite3.Error as exc:
                if not is_full(exc):
                    raise failure(self.path, "put", exc) from exc
                for lost in recs[i:]:
                    self._dropped[Kind(lost.kind)] += 1
                self._dirty = True
                break
        if self._dirty:
            try:  # the counters may have to wait for the next write that the disk accepts
                self._write(lambda: None)
            except sqlite3.Error as exc:
                if not is_full(exc):
                    raise failure(self.path, "put", exc) from exc
        return rows, written

    def _delete_gone(self) -> int:
        """Delete acknowledged entries (inside a transaction); return how many rows went."""
        deleted = 0
        freed = 0
        # one statement text for any count (handout.IN_IDS): a text per count filled sqlite3's statement cache
        for (nbytes,) in self._db.execute(
            f"DELETE FROM records WHERE id {IN_IDS} RETURNING {ROW_BYTES}", (ids_param(sorted(self._gone)),)
        ).fetchall():
            deleted += 1
            freed += nbytes + ROW_OVERHEAD
        self._count -= deleted
        self._bytes -= freed
        self._gone.clear()
        return deleted

    def _count_attempts(self, ids: list[int]) -> None:
        self._db.executemany("UPDATE records SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])
