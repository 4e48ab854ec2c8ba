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

Duplicates, retention and a full disk: see :mod:`gateway.delivery.outbox_write`.

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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TypeVar

from gateway.delivery.handout import Line
from gateway.delivery.handout import Row as _Row
from gateway.delivery.outbox_file import (
    BUSY_TIMEOUT_S,
    DEFAULT_BUDGET_BYTES,
    PAGE_SIZE,
    RECENT,
    ROW_OVERHEAD,
    SCHEMA_VERSION,
    Stored,
    failure,
    is_full,
    open_file,
)
from gateway.delivery.outbox_write import Writing
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


class Outbox(Writing):
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
