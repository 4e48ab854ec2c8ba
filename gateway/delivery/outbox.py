"""The durable outbox: every record waits here, on disk, until the broker has it.

Records go into one SQLite table before anything is acknowledged anywhere; a
record leaves only through :meth:`Outbox.ack`, which the uplink calls once the
broker acknowledged the publish. Delivery is at-least-once: entries taken but
not acknowledged are handed out again after a restart.

The file itself (schema, pragmas, durability, flash wear) is
:mod:`gateway.delivery.outbox_file`; the record types are :mod:`gateway.delivery.records`.

Ordering. :meth:`Outbox.take` hands out entries oldest first (FIFO by ``id``,
events and readings alike); ``max_id`` confines it to the backlog below a mark
(the uplink's replay lane). :meth:`Outbox.put_held` stores records and hands
them out in the same step (the uplink's live lane). Ids are ``AUTOINCREMENT``:
never reused, so an acknowledgement can never delete a younger record that
inherited an id, and the highest id is the number of records ever stored.

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

State. The ``meta`` table also keeps what the gateway must remember across
restarts: the MQTT session counter (:meth:`Outbox.next_session`) and, per
node, the last event seq read from its event log (``cursors``, written in the
same transaction as the events, so a cursor never runs ahead of what is stored).

The in-memory side of ordering (what is in flight, given back, and where the
scan for new rows stands) is :class:`gateway.delivery.handout.Line`.

Threads. :class:`Outbox` is synchronous and confined to the thread that created
it; :class:`gateway.delivery.outbox_thread.AsyncOutbox` runs one in a dedicated thread.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from gateway.delivery.handout import COLUMNS as _COLUMNS
from gateway.delivery.handout import Line
from gateway.delivery.handout import Row as _Row
from gateway.delivery.outbox_file import (
    BUSY_TIMEOUT_S,
    CURSOR,
    DEFAULT_BUDGET_BYTES,
    INSERT,
    PAGE_SIZE,
    RECENT,
    ROW_BYTES,
    ROW_OVERHEAD,
    SCHEMA_VERSION,
    Stored,
    chunks,
    failure,
    is_full,
    open_file,
    rollback,
    sequence,
)
from gateway.delivery.records import Entry, Kind, OutboxError, OutboxRecord

_T = TypeVar("_T")

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "PAGE_SIZE",
    "RECENT",
    "ROW_OVERHEAD",
    "SCHEMA_VERSION",
    "Entry",
    "Kind",
    "Outbox",
    "OutboxError",
    "OutboxRecord",
]


class Outbox:
    """The durable outbox on one SQLite file; synchronous and confined to one thread.

    Args:
        path: the database file; created (with its directory entry) if missing.
        budget_bytes: logical size limit (see the module docstring); older readings make room beyond it.
        synchronous: ``"FULL"`` (survives power loss) or ``"NORMAL"`` (survives process crashes; faster).

    Raises:
        OutboxError: the file is not an outbox, has a newer schema, is corrupt or is used by another process.
        ValueError: a bad argument.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, budget_bytes: int = DEFAULT_BUDGET_BYTES, synchronous: str = "FULL"
    ) -> None:
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, not {budget_bytes}")
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self.synchronous = sync
        self._line = Line()  # what is in flight, given back, and where the scan for new rows stands
        self._inflight = self._line.inflight  # handed out, neither acked, nacked nor released
        self._gone: set[int] = set()  # acked, delete not yet on disk (full disk)
        self._recent: dict[tuple[str, int], deque[int]] = {}
        self._dropped = {Kind.READING: 0, Kind.EVENT: 0}
        self._duplicates = 0
        self._cursors: dict[str, int] = {}
        self._session = 0
        self._dirty = False  # counters changed since they were last written
        self._lazy = False  # the duplicates count changed: written with the next write, or at close
        self._count = 0
        self._bytes = 0
        self._last_id = 0
        self._closed = False
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutboxError(self.path, f"cannot open ({exc})") from exc
        try:
            self._load(open_file(self._db, self.path, sync))
        except sqlite3.Error as exc:
            self._db.close()
            raise failure(self.path, "open", exc) from exc
        except BaseException:
            self._db.close()
            raise

    def _load(self, stored: Stored) -> None:
        """Take over what the file remembers (read by :func:`~gateway.delivery.outbox_file.open_file`)."""
        self._duplicates, self._session = stored.duplicates, stored.session
        self._dropped, self._cursors = stored.dropped, stored.cursors
        self._count, self._bytes, self._last_id = stored.rows, stored.size, stored.last_id
        for node, kind, seq in stored.newest:
            self._remember(node, kind, seq)

    # -- writing ------------------------------------------------------------------------------------------------

    def put_many(self, records: Iterable[OutboxRecord], *, cursors: Mapping[str, int] | None = None) -> int:
        """Store records in one transaction; return how many of them are now in the outbox.

        Duplicates (see the module docstring) are skipped and counted. Records the budget or a full disk
        cannot keep are counted in :meth:`dropped` instead of raising. ``cursors`` (node -> last event seq
        read) are written in the same transaction.
        """
        return len(self._put(records, cursors, hold=False))

    def put_held(
        self, records: Iterable[OutboxRecord], *, cursors: Mapping[str, int] | None = None
    ) -> list[Entry]:
        """Store records like :meth:`put_many` and hand the stored ones out at once (in flight).

        The uplink's live lane: what it publishes right away is on disk first, and an entry whose publish
        is never acknowledged goes back in line with :meth:`release` (or at the next start).
        """
        return self._put(records, cursors, hold=True)

    def ack(self, ids: Iterable[int]) -> int:
        """Delete delivered entries in one transaction; return how many rows were deleted.

        Unknown or already acknowledged ids are ignored. On a full disk the entries are still withdrawn from
        circulation and deleted by the next write that succeeds (they come back only after a restart).
        """
        self._check_open()
        ids = list(ids)
        self._inflight.difference_update(ids)
        self._gone.update(ids)
        try:
            return self._write(self._delete_gone)
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise failure(self.path, "ack", exc) from exc
            return 0

    def nack(self, ids: Iterable[int]) -> int:
        """Give in-flight entries back and count an attempt; return how many were in flight.

        They go back to their place in line, ahead of younger entries: a record that keeps failing holds
        up the line until the caller acks it (gives up) or leaves it out with ``exclude_ids``.
        """
        self._check_open()
        back = self._line.give_back(ids)
        if back:
            try:
                self._write(functools.partial(self._count_attempts, back))
            except sqlite3.Error as exc:
                if not is_full(exc):  # attempts are advice: a full disk may lose the increment
                    raise failure(self.path, "nack", exc) from exc
        return len(back)

    def release(self, ids: Iterable[int]) -> int:
        """Give in-flight entries back without counting an attempt (cancelled sends, shutdown)."""
        if self._closed:
            return 0
        return len(self._line.give_back(ids))

    def next_session(self) -> int:
        """Count one more broker session and return its number (1, 2, ...; persisted, never repeats)."""
        self._check_open()
        number = self._session + 1

        def body() -> None:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('session', ?)", (number,))

        self._db.execute("PRAGMA synchronous = FULL")  # once per broker connection: cheap, even in NORMAL
        try:
            self._write(body)
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise failure(self.path, "session", exc) from exc
            # a full disk: the number is still new for this process; a restart may repeat it
        finally:
            self._db.execute(f"PRAGMA synchronous = {self.synchronous}")
        self._session = number
        return number

    def remember_schemas(self, schemas: Mapping[bytes, bytes]) -> None:
        """Keep ``id -> description`` of the schemas payloads refer to (once each; a description never changes)."""
        self._check_open()
        rows = [(k, v) for k, v in schemas.items()]
        try:
            self._write(lambda: self._db.executemany("INSERT OR IGNORE INTO schemas (id, body) VALUES (?, ?)", rows))
        except sqlite3.Error as exc:
            if not is_full(exc):
                raise failure(self.path, "schemas", exc) from exc

    def schemas(self) -> dict[bytes, bytes]:
        """Every schema description kept, by id."""
        self._check_open()
        return {bytes(k): bytes(v) for k, v in self._db.execute("SELECT id, body FROM schemas")}

    # -- reading ------------------------------------------------------------------------------------------------

    def take(
        self,
        limit: int,
        *,
        exclude_ids: Iterable[int] = (),
        historical_before: float | None = None,
        max_id: int | None = None,
    ) -> list[Entry]:
        """Hand out up to ``limit`` entries, oldest first, and mark them in flight.

        In-flight entries are not handed out again until nacked or released (or the process restarts).
        ``exclude_ids`` are skipped and stay available; with ``max_id`` only entries up to that id are
        considered. An entry is ``historical`` if it was stored so or if ``historical_before`` is given and
        the entry was created before it.
        """
        self._check_open()
        if limit <= 0:
            return []
        skip = set(exclude_ids)
        rows: list[_Row] = []
        try:
            rows = self._line.take_given_back(self._db, limit, skip, max_id, self._gone)
            if len(rows) < limit:
                top = self._last_id if max_id is None else min(max_id, self._last_id)
                rows += self._line.take_new(self._db, limit - len(rows), skip, top, self._gone)
        except sqlite3.Error as exc:
            for row in rows:  # taken from the given-back line: they stay in it
                self._line.push(row[0])
            raise failure(self.path, "take", exc) from exc
        out = [self._entry(row, historical_before) for row in rows]
        self._inflight.update(e.id for e in out)
        return out

    def depth(self) -> tuple[int, int]:
        """Entries stored (in flight included) and their logical size in bytes."""
        return self._count, self._bytes

    def in_flight(self) -> int:
        """Entries handed out and not yet acked, nacked or released."""
        return len(self._inflight)

    def last_id(self) -> int:
        """The highest id ever given to a record: the mark between a backlog and what comes after."""
        return self._last_id

    def stored(self) -> int:
        """Records stored since the file was created (ids are never reused, so: the highest id)."""
        return self._last_id

    def counters(self) -> tuple[int, int, int]:
        """Entries stored now, records stored ever, records dropped ever (both kinds): one call for a dashboard."""
        return self._count, self._last_id, sum(self._dropped.values())

    def dropped(self) -> dict[Kind, int]:
        """Records lost to the budget or a full disk, per kind, since the file was created."""
        return dict(self._dropped)

    def duplicates(self) -> int:
        """Records refused as duplicates since the file was created (written with the next counter update)."""
        return self._duplicates

    def cursors(self) -> dict[str, int]:
        """Per node, the last event seq stored with :meth:`put_many` ``cursors``."""
        return dict(self._cursors)

    def session(self) -> int:
        """The current session number (0 before the first :meth:`next_session`)."""
        return self._session

    def close(self) -> None:
        """Write pending counters and deletes if the disk lets us, and close the file (idempotent)."""
        if self._closed:
            return
        try:
            if self._dirty or self._lazy or self._gone:
                self._dirty = True
                self._write(self._delete_gone)
        except sqlite3.Error:
            pass  # a full disk: acked entries are sent once more after restart, counters lag
        finally:
            self._closed = True
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------------------

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
        for chunk in chunks(sorted(self._gone)):
            marks = ", ".join("?" * len(chunk))
            for (nbytes,) in self._db.execute(
                f"DELETE FROM records WHERE id IN ({marks}) RETURNING {ROW_BYTES}", chunk
            ).fetchall():
                deleted += 1
                freed += nbytes + ROW_OVERHEAD
        self._count -= deleted
        self._bytes -= freed
        self._gone.clear()
        return deleted

    def _count_attempts(self, ids: list[int]) -> None:
        self._db.executemany("UPDATE records SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])
