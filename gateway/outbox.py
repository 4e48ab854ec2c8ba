"""The durable outbox: every record waits here, on disk, until the broker has it.

Records go into one SQLite table before anything is acknowledged anywhere; a
record leaves only through :meth:`Outbox.ack`, which the uplink calls once the
broker acknowledged the publish. Delivery is at-least-once: entries taken but
not acknowledged are handed out again after a restart.

Durability. The file is in WAL mode. With ``synchronous="NORMAL"`` (the
default) a transaction is in the operating system's hands when
:meth:`Outbox.put_many` returns: it survives the death of the process
(SIGKILL, OOM killer, a crash) completely. On power loss or a kernel panic the
database stays consistent, but the transactions committed shortly before the
cut may roll back: those the kernel had not yet written back (Linux flushes
dirty pages within ~5-30 s by default), never more than the WAL written since
the last checkpoint (~4 MiB, some 20,000 small records). Cabinets that want
power-loss durability pass ``synchronous="FULL"``: every commit is fsynced, at
roughly 9k commits/s on our machines instead of ~80k.

Ordering. :meth:`Outbox.take` hands out entries oldest first (FIFO by ``id``,
events and readings alike). Ids are ``AUTOINCREMENT``: never reused, so an
acknowledgement can never delete a younger record that inherited an id.

Retention. ``budget_bytes`` bounds the logical size of the outbox: the sum over
rows of ``len(payload) + len(node) + ROW_OVERHEAD``. ``ROW_OVERHEAD`` (64) was
measured here: for payloads up to a few hundred bytes the file's used pages
stay within about 10% of this figure; larger payloads waste more page space
(about 40% at 1 kB). The WAL file comes on top (checkpointed at ~4 MiB,
truncated to ``journal_size_limit``). A logical figure, unlike page counts,
shrinks as soon as rows are deleted and lets eviction know how much it freed.
When a put takes the outbox over budget the oldest readings not in flight are
deleted first, events only when no such reading is left; every deleted record
is counted in :meth:`Outbox.dropped` (persisted). Entries in flight are never
evicted, so the budget can be exceeded by at most what is in flight.

Full disk. ``SQLITE_FULL`` ("database or disk is full") never reaches the
caller: put_many evicts as under the budget rule and retries, then stores what
the disk takes one record at a time and counts the rest as dropped. An ack that
cannot be written keeps its entries out of circulation and retries the delete
with the next write.

Threads. :class:`Outbox` is synchronous and confined to the thread that created
it. :class:`AsyncOutbox` runs one in one dedicated thread so that the event loop
never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import heapq
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple, ParamSpec, TypeVar

_T = TypeVar("_T")
_P = ParamSpec("_P")

__all__ = [
    "DEFAULT_BUDGET_BYTES",
    "ROW_OVERHEAD",
    "SCHEMA_VERSION",
    "AsyncOutbox",
    "Entry",
    "Kind",
    "Outbox",
    "OutboxError",
    "OutboxRecord",
]

SCHEMA_VERSION = 1
APPLICATION_ID = 0x53454F42  # "SEOB": tells an outbox from any other SQLite file
ROW_OVERHEAD = 64  # bytes per row beyond payload and node: record header, integers, UNIQUE index entry
DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
_WAL_LIMIT = 8 * 1024 * 1024  # journal_size_limit: the WAL is truncated to this after a checkpoint
_CHUNK = 500  # ids per "IN (...)": well under SQLite's host-parameter limit
_BUSY_TIMEOUT_S = 1.0
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26

_SCHEMA = (
    """CREATE TABLE records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        node TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        created REAL NOT NULL,
        payload BLOB NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        historical INTEGER NOT NULL DEFAULT 0,
        UNIQUE (node, seq, kind))""",
    # Retention finds the oldest readings without walking past events (and the reverse); appended at two
    # points only, this index costs about one page write per transaction.
    "CREATE INDEX records_by_kind ON records (kind)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
_INSERT = "INSERT OR IGNORE INTO records (node, seq, kind, created, payload, historical) VALUES (?, ?, ?, ?, ?, ?)"
_COLUMNS = "id, node, seq, kind, created, payload, attempts, historical"
_ROW_BYTES = "length(payload) + length(node)"
_Row = tuple[int, str, int, int, float, bytes, int, int]  # the columns of _COLUMNS


class Kind(enum.IntEnum):
    """What a record is; retention sacrifices readings before events."""

    READING = 0
    EVENT = 1


class OutboxError(Exception):
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
        synchronous: ``"NORMAL"`` (survives process crashes) or ``"FULL"`` (also power loss, slower).

    Raises:
        OutboxError: the file is not an outbox, has a newer schema, is corrupt or is used by another process.
        ValueError: a bad argument.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, budget_bytes: int = DEFAULT_BUDGET_BYTES, synchronous: str = "NORMAL"
    ) -> None:
        sync = synchronous.upper()
        if sync not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', not {synchronous!r}")
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, not {budget_bytes}")
        self.path = Path(path)
        self.budget_bytes = budget_bytes
        self._inflight: set[int] = set()  # handed out, neither acked, nacked nor released
        self._redo: list[int] = []  # heap of ids <= _high that may be handed out again
        self._high = 0  # highest id handed out since open: everything above is new
        self._gone: set[int] = set()  # acked, delete not yet on disk (full disk)
        self._dropped = {Kind.READING: 0, Kind.EVENT: 0}
        self._duplicates = 0
        self._dirty = False  # counters changed since they were last written
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
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(self.path, f"cannot use WAL mode (journal_mode stays {mode!r})")
        db.execute(f"PRAGMA synchronous = {sync}")
        db.execute(f"PRAGMA journal_size_limit = {_WAL_LIMIT}")
        if fresh:
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute("COMMIT")
            except BaseException:
                self._rollback()
                raise
        for key, value in db.execute("SELECT key, value FROM meta"):
            if key == "duplicates":
                self._duplicates = int(value)
            elif key.startswith("dropped."):
                self._dropped[Kind[key[8:].upper()]] = int(value)
        count, total = db.execute(f"SELECT count(*), total({_ROW_BYTES}) FROM records").fetchone()
        self._count = int(count)
        self._bytes = int(total) + ROW_OVERHEAD * self._count
        self._last_id = self._sequence()

    # -- writing ------------------------------------------------------------------------------------------------

    def put_many(self, records: Iterable[OutboxRecord]) -> int:
        """Store records in one transaction; return how many of them are now in the outbox.

        Duplicates of stored records (same node, seq and kind) are ignored and counted. Records the
        budget or a full disk cannot keep are counted in :meth:`dropped` instead of raising.
        """
        self._check_open()
        recs = records if isinstance(records, list) else list(records)
        if not recs:
            return 0
        size = ROW_OVERHEAD * len(recs)
        for r in recs:
            if r.kind not in (Kind.READING, Kind.EVENT):
                raise ValueError(f"record {r.node}/{r.seq}: kind must be 0 (reading) or 1 (event), not {r.kind!r}")
            size += len(r.payload) + len(r.node)
        try:
            return self._write(functools.partial(self._insert, recs, size))
        except sqlite3.Error as exc:
            if not _is_full(exc):
                raise self._failure("put", exc) from exc
        return self._put_on_full_disk(recs, size)

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
        back = self._give_back(ids)
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
        return len(self._give_back(ids))

    # -- reading ------------------------------------------------------------------------------------------------

    def take(
        self, limit: int, *, exclude_ids: Iterable[int] = (), historical_before: float | None = None
    ) -> list[Entry]:
        """Hand out up to ``limit`` entries, oldest first, and mark them in flight.

        In-flight entries are not handed out again until nacked or released (or the process restarts).
        ``exclude_ids`` are skipped and stay available. An entry is ``historical`` if it was stored so or
        if ``historical_before`` is given and the entry was created before it.
        """
        self._check_open()
        if limit <= 0:
            return []
        skip = set(exclude_ids)
        rows: list[_Row] = []
        try:
            rows = self._take_redo(limit, skip)
            if len(rows) < limit:
                rows += self._take_new(limit - len(rows), skip)
        except sqlite3.Error as exc:
            for row in rows:  # taken from the given-back line: they stay in it
                heapq.heappush(self._redo, row[0])
            raise self._failure("take", exc) from exc
        out = []
        for rid, node, seq, kind, created, payload, attempts, hist in rows:
            old = bool(hist) or (historical_before is not None and created < historical_before)
            out.append(Entry(rid, node, seq, kind, created, payload, attempts, old))
            self._inflight.add(rid)
        return out

    def depth(self) -> tuple[int, int]:
        """Entries stored (in flight included) and their logical size in bytes."""
        return self._count, self._bytes

    def in_flight(self) -> int:
        """Entries handed out and not yet acked, nacked or released."""
        return len(self._inflight)

    def dropped(self) -> dict[Kind, int]:
        """Records lost to the budget or a full disk, per kind, since the file was created."""
        return dict(self._dropped)

    def duplicates(self) -> int:
        """Records ignored because an equal (node, seq, kind) was stored, since the file was created."""
        return self._duplicates

    def close(self) -> None:
        """Write pending counters and deletes if the disk lets us, and close the file (idempotent)."""
        if self._closed:
            return
        try:
            if self._dirty or self._gone:
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
        self._dirty = False
        return result

    def _insert(self, recs: list[OutboxRecord], size: int) -> int:
        """INSERT OR IGNORE ``recs`` (``size`` logical bytes) and enforce the budget; return how many stay."""
        if self._gone:  # acks that a full disk refused earlier
            self._delete_gone()
        before = self._last_id
        inserted = self._db.executemany(_INSERT, recs).rowcount
        self._last_id = self._sequence()  # an ignored insert still uses up an id
        if inserted < len(recs):
            self._duplicates += len(recs) - inserted
            self._dirty = True
            (total,) = self._db.execute(f"SELECT total({_ROW_BYTES}) FROM records WHERE id > ?", (before,)).fetchone()
            size = int(total) + ROW_OVERHEAD * inserted
        self._count += inserted
        self._bytes += size
        stored = inserted
        if self._bytes > self.budget_bytes:
            stored -= self._evict(self._bytes - self.budget_bytes, newer_than=before)
        return stored

    def _evict(self, need: int, *, newer_than: int) -> int:
        """Delete the oldest readings, then events, not in flight, until ``need`` bytes are freed.

        Returns how many of the deleted rows have an id above ``newer_than`` (records of the current put).
        """
        freed = 0
        fresh = 0
        for kind in (Kind.READING, Kind.EVENT):
            victims: list[int] = []
            cur = self._db.execute(f"SELECT id, {_ROW_BYTES} FROM records WHERE kind = ? ORDER BY id", (int(kind),))
            for rid, nbytes in cur:
                if rid in self._inflight or rid in self._gone:
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
                fresh += sum(1 for v in victims if v > newer_than)
            if freed >= need:
                break
        self._bytes -= freed
        return fresh

    def _put_on_full_disk(self, recs: list[OutboxRecord], size: int) -> int:
        """The disk refused a put: make room as retention would, retry, then store what fits one by one."""
        try:  # deleting old rows frees whole pages that new rows can reuse
            self._write(functools.partial(self._evict, size, newer_than=self._last_id))
            return self._write(functools.partial(self._insert, recs, size))
        except sqlite3.Error as exc:
            if not _is_full(exc):
                raise self._failure("put", exc) from exc
        stored = 0
        for i, r in enumerate(recs):
            try:
                stored += self._write(functools.partial(self._insert, [r], ROW_OVERHEAD + len(r.payload) + len(r.node)))
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
        return stored

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

    def _give_back(self, ids: Iterable[int]) -> list[int]:
        """Move in-flight ids back to circulation; ids not in flight are ignored."""
        back = []
        for i in ids:
            if i in self._inflight:
                self._inflight.discard(i)
                heapq.heappush(self._redo, i)
                back.append(i)
        return back

    def _take_redo(self, limit: int, skip: set[int]) -> list[_Row]:
        """Rows given back earlier (all older than any row not handed out yet), oldest first."""
        rows: list[_Row] = []
        keep: list[int] = []  # popped but staying in line
        chosen: list[int] = []
        try:
            while self._redo and len(rows) < limit:
                ids: list[int] = []
                while self._redo and len(ids) < limit - len(rows):
                    rid = heapq.heappop(self._redo)
                    if rid in skip:
                        keep.append(rid)
                    elif rid not in self._inflight and rid not in self._gone and (not ids or ids[-1] != rid):
                        ids.append(rid)
                if not ids:
                    break
                chosen += ids
                marks = ", ".join("?" * len(ids))
                # rows evicted meanwhile are simply missing here, and so forgotten
                rows += self._db.execute(f"SELECT {_COLUMNS} FROM records WHERE id IN ({marks}) ORDER BY id", ids)
        except sqlite3.Error:
            keep += chosen
            raise
        finally:
            for rid in keep:
                heapq.heappush(self._redo, rid)
        return rows

    def _take_new(self, limit: int, skip: set[int]) -> list[_Row]:
        """Rows never handed out since open, oldest first; skipped ones join the given-back heap."""
        fetched = self._db.execute(
            f"SELECT {_COLUMNS} FROM records WHERE id > ? ORDER BY id LIMIT ?", (self._high, limit + len(skip))
        ).fetchall()
        rows: list[_Row] = []
        for row in fetched:
            if len(rows) >= limit:
                break
            self._high = row[0]
            if row[0] in skip:
                heapq.heappush(self._redo, row[0])
            else:
                rows.append(row)
        return rows


class AsyncOutbox:
    """An :class:`Outbox` run in one dedicated thread, so the event loop never blocks on the disk.

    Open with ``await AsyncOutbox.open(path, ...)``; methods mirror :class:`Outbox`. A :meth:`take`
    cancelled while queued takes nothing; one cancelled while running releases its entries when done.
    """

    def __init__(self, core: Outbox, executor: ThreadPoolExecutor) -> None:
        """Wrap an Outbox created in ``executor``'s only thread (use :meth:`open`)."""
        self._core = core
        self._executor = executor

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, budget_bytes: int = DEFAULT_BUDGET_BYTES, synchronous: str = "NORMAL"
    ) -> AsyncOutbox:
        """Open (or create) the outbox in a new writer thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        make = functools.partial(Outbox, path, budget_bytes=budget_bytes, synchronous=synchronous)
        try:
            core = await asyncio.get_running_loop().run_in_executor(executor, make)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(core, executor)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._core.path

    async def _call(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def put_many(self, records: Iterable[OutboxRecord]) -> int:
        """See :meth:`Outbox.put_many`; the records are collected here, in the loop's thread."""
        return await self._call(self._core.put_many, list(records))

    async def take(
        self, limit: int, *, exclude_ids: Iterable[int] = (), historical_before: float | None = None
    ) -> list[Entry]:
        """See :meth:`Outbox.take`."""
        skip = list(exclude_ids)
        cancelled = threading.Event()

        def run() -> list[Entry]:
            if cancelled.is_set():  # cancelled while queued: take nothing
                return []
            return self._core.take(limit, exclude_ids=skip, historical_before=historical_before)

        job = asyncio.get_running_loop().run_in_executor(self._executor, run)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            cancelled.set()
            job.add_done_callback(self._give_back)  # cancelled while taking: release once done
            raise

    def _give_back(self, job: asyncio.Future[list[Entry]]) -> None:
        """Release what a cancelled take took, in the writer thread."""
        if job.cancelled() or job.exception() is not None:
            return
        ids = [e.id for e in job.result()]
        if ids:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: they come back at the next open anyway
                self._executor.submit(self._core.release, ids)

    async def ack(self, ids: Iterable[int]) -> int:
        """See :meth:`Outbox.ack`."""
        return await self._call(self._core.ack, list(ids))

    async def nack(self, ids: Iterable[int]) -> int:
        """See :meth:`Outbox.nack`."""
        return await self._call(self._core.nack, list(ids))

    async def release(self, ids: Iterable[int]) -> int:
        """See :meth:`Outbox.release`."""
        return await self._call(self._core.release, list(ids))

    async def depth(self) -> tuple[int, int]:
        """See :meth:`Outbox.depth`."""
        return await self._call(self._core.depth)

    async def in_flight(self) -> int:
        """See :meth:`Outbox.in_flight`."""
        return await self._call(self._core.in_flight)

    async def dropped(self) -> dict[Kind, int]:
        """See :meth:`Outbox.dropped`."""
        return await self._call(self._core.dropped)

    async def duplicates(self) -> int:
        """See :meth:`Outbox.duplicates`."""
        return await self._call(self._core.duplicates)

    async def close(self) -> None:
        """Close the outbox and let its thread end."""
        try:
            await self._call(self._core.close)
        finally:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncOutbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
