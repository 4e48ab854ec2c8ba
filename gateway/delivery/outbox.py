"""The durable outbox: every record waits here, on disk, until the broker has it.

Records go into one SQLite table before anything is acknowledged anywhere; a
record leaves only through :meth:`Outbox.ack`, which the uplink calls once the
broker acknowledged the publish. Delivery is at-least-once: entries taken but
not acknowledged are handed out again after a restart.

Durability. The file is in WAL mode. With ``synchronous="FULL"`` (the
default) every commit is fsynced before :meth:`Outbox.put_many` returns: it
survives a power cut (tested by cutting power under the gateway,
docs/reliability.md). With ``"NORMAL"`` a transaction is in the operating
system's hands when it returns: it survives the death of the process (SIGKILL,
OOM killer, a crash) completely, but on power loss the transactions committed
shortly before the cut may roll back (those the kernel had not yet written
back, never more than the WAL written since the last checkpoint). The price of
FULL (``python -m tools.bench.outbox``): about 2.6k single-record commits/s
against 33k, 109k records/s against 168k in commits of 100; the gateway writes
one commit per batch of polls, so its throughput targets hold either way. A new
session number is fsynced in both modes (a repeated one would make a
consumer take a late Will for the current session's death).

Disk writes (flash wear). A record is one row per poll of a node (its whole
set of readings in one payload), not one row per reading. The table has no
secondary index and new files use 1 KiB pages, so a transaction appends only
the pages it touches: the table's last leaf and the AUTOINCREMENT counter.
Measured (``python -m tools.bench.outbox``, 32 nodes): ~2.2 KB of WAL per
single-poll transaction and ~0.2 KB per poll when 32 polls share one, against
16.6 KB and 2.9 KB with the unique (node, seq, kind) index and 4 KiB pages of
schema 1. Schema-1 files are still opened and used as they are.

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

import contextlib
import enum
import functools
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import NamedTuple, TypeVar

from gateway.delivery.handout import COLUMNS as _COLUMNS
from gateway.delivery.handout import Line
from gateway.delivery.handout import Row as _Row
from gateway.errors import GatewayError

_T = TypeVar("_T")

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "RECENT",
    "ROW_OVERHEAD",
    "SCHEMA_VERSION",
    "Entry",
    "Kind",
    "Outbox",
    "OutboxError",
    "OutboxRecord",
]

SCHEMA_VERSION = 2
APPLICATION_ID = 0x53454F42  # "SEOB": tells an outbox from any other SQLite file
PAGE_SIZE = 1024  # small pages: a one-row transaction appends ~1 KiB per page it touches
ROW_OVERHEAD = 24  # bytes per row beyond payload and node (record header, integers, page slack), measured
DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
RECENT = 32  # seqs remembered per (node, kind) to refuse duplicates
_WAL_LIMIT = 8 * 1024 * 1024  # journal_size_limit: the WAL is truncated to this after a checkpoint
_CACHE_KIB = 512  # page cache: the hot pages are the table's ends; SQLite's 2 MiB default is resident memory
_CHUNK = 500  # ids per "IN (...)": well under SQLite's host-parameter limit
_BUSY_TIMEOUT_S = 1.0
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26

# What the payloads' schema ids mean, kept with them: a record outlives the gateway version that wrote it.
_SCHEMAS = "CREATE TABLE IF NOT EXISTS schemas (id BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID"
_SCHEMA = (
    """CREATE TABLE records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        created REAL NOT NULL,
        payload BLOB NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        historical INTEGER NOT NULL DEFAULT 0)""",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    _SCHEMAS,
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
# OR IGNORE: schema-1 files still carry a UNIQUE (node, seq, kind) constraint.
_INSERT = "INSERT OR IGNORE INTO records (node, seq, kind, created, payload, historical) VALUES (?, ?, ?, ?, ?, ?)"
_ROW_BYTES = "length(payload) + length(node)"
_CURSOR = "cursor."


class Kind(enum.IntEnum):
    """What a record is; retention sacrifices readings before events."""

    READING = 0
    EVENT = 1


class OutboxError(GatewayError):
    """The outbox file cannot be used: not an outbox, a newer schema, in use, corrupt or unreadable."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"outbox {path}: {problem}")
        self.path = path
        self.problem = problem


class OutboxRecord(NamedTuple):
    """One record to store; ``payload`` is already encoded and opaque to the outbox."""

    node: str
    seq: int
    kind: int
    created: float
    payload: bytes
    historical: bool = False


class Entry(NamedTuple):
    """A stored record as handed out by :meth:`Outbox.take`; ``id`` is what ack and nack take."""

    id: int
    node: str
    seq: int
    kind: int
    created: float
    payload: bytes
    attempts: int
    historical: bool


def _code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code of an error (0 if the driver did not attach one)."""
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def _is_full(exc: BaseException) -> bool:
    """Whether an error is SQLite's "database or disk is full" (a full disk or max_page_count)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        _code(exc) == _SQLITE_FULL or "database or disk is full" in str(exc)
    )


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    """Slices of at most _CHUNK ids."""
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


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
            self._db = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise OutboxError(self.path, f"cannot open ({exc})") from exc
        try:
            self._open(sync)
        except sqlite3.Error as exc:
            self._db.close()
            raise self._failure("open", exc) from exc
        except BaseException:
            self._db.close()
            raise

    # -- opening ------------------------------------------------------------------------------------------------

    def _open(self, sync: str) -> None:
        """Check or create the schema, set the pragmas and load the counters."""
        db = self._db
        # One process owns the outbox: a second gateway on the same file would send everything twice.
        db.execute("PRAGMA locking_mode = EXCLUSIVE")
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        fresh = app_id == 0 and version == 0 and not tables
        if not fresh:
            if app_id != APPLICATION_ID:
                names = ", ".join(sorted(tables)) or "none"
                raise OutboxError(
                    self.path, f"not a streetedge outbox (application_id {app_id:#x}, tables: {names})"
                )
            if version > SCHEMA_VERSION:
                raise OutboxError(
                    self.path,
                    f"schema version {version} is newer than this gateway's ({SCHEMA_VERSION}); "
                    "upgrade the gateway or move the file away",
                )
            if version < 1 or not {"records", "meta"} <= tables:
                raise OutboxError(self.path, f"incomplete outbox schema (version {version})")
        else:
            db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only before the first table and WAL
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(self.path, f"cannot use WAL mode (journal_mode stays {mode!r})")
        db.execute(f"PRAGMA synchronous = {sync}")
        db.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
        db.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        if fresh:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        if "schemas" not in tables and not fresh:  # a file from before the table existed
            db.execute(_SCHEMAS)
        for key, value in db.execute("SELECT key, value FROM meta"):
            if key == "duplicates":
                self._duplicates = int(value)
            elif key == "session":
                self._session = int(value)
            elif key.startswith("dropped."):
                self._dropped[Kind[key[8:].upper()]] = int(value)
            elif key.startswith(_CURSOR):
                self._cursors[key[len(_CURSOR) :]] = int(value)
        count, total = db.execute(f"SELECT count(*), total({_ROW_BYTES}) FROM records").fetchone()
        self._count = int(count)
        self._bytes = int(total) + ROW_OVERHEAD * self._count
        self._last_id = self._sequence()
        newest = db.execute("SELECT node, kind, seq FROM records ORDER BY id DESC LIMIT ?", (RECENT * 256,))
        for node, kind, seq in reversed(newest.fetchall()):
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
            if not _is_full(exc):
                raise self._failure("ack", exc) from exc
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
                if not _is_full(exc):  # attempts are advice: a full disk may lose the increment
                    raise self._failure("nack", exc) from exc
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
            if not _is_full(exc):
                raise self._failure("session", exc) from exc
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
            if not _is_full(exc):
                raise self._failure("schemas", exc) from exc

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
            raise self._failure("take", exc) from exc
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

    def _failure(self, what: str, exc: sqlite3.Error) -> OutboxError:
        """An OutboxError that says what went wrong in words an operator can act on."""
        code = _code(exc)
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            problem = f"{what}: in use by another process ({exc})"
        elif code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            problem = f"{what}: corrupt or not an SQLite database ({exc})"
        else:
            problem = f"{what} failed ({exc})"
        return OutboxError(self.path, problem)

    def _rollback(self) -> None:
        if self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already (SQLITE_FULL)
                self._db.execute("ROLLBACK")

    def _sequence(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) if row else 0

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
            self._rollback()
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
            if not _is_full(exc):
                raise self._failure("put", exc) from exc
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
                [(_CURSOR + node, seq) for node, seq in cursors.items()],
            )
        if not recs:
            return []
        before = self._last_id
        inserted = self._db.executemany(_INSERT, recs).rowcount
        self._last_id = self._sequence()  # an ignored insert (schema 1) still uses up an id
        if inserted < len(recs):
            self._duplicates += len(recs) - inserted
            self._dirty = True
            (total,) = self._db.execute(f"SELECT total({_ROW_BYTES}) FROM records WHERE id > ?", (before,)).fetchone()
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
            cur = self._db.execute(f"SELECT id, kind, {_ROW_BYTES} FROM records ORDER BY id")
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
            if not _is_full(exc):
                raise self._failure("put", exc) from exc
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
                if not _is_full(exc):
                    raise self._failure("put", exc) from exc
                for lost in recs[i:]:
                    self._dropped[Kind(lost.kind)] += 1
                self._dirty = True
                break
        if self._dirty:
            try:  # the counters may have to wait for the next write that the disk accepts
                self._write(lambda: None)
            except sqlite3.Error as exc:
                if not _is_full(exc):
                    raise self._failure("put", exc) from exc
        return rows, written

    def _delete_gone(self) -> int:
        """Delete acknowledged entries (inside a transaction); return how many rows went."""
        deleted = 0
        freed = 0
        for chunk in _chunks(sorted(self._gone)):
            marks = ", ".join("?" * len(chunk))
            for (nbytes,) in self._db.execute(
                f"DELETE FROM records WHERE id IN ({marks}) RETURNING {_ROW_BYTES}", chunk
            ).fetchall():
                deleted += 1
                freed += nbytes + ROW_OVERHEAD
        self._count -= deleted
        self._bytes -= freed
        self._gone.clear()
        return deleted

    def _count_attempts(self, ids: list[int]) -> None:
        self._db.executemany("UPDATE records SET attempts = attempts + 1 WHERE id = ?", [(i,) for i in ids])
