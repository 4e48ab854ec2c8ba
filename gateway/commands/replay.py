"""The command ids a gateway has executed, kept in SQLite so that no restart opens a replay window.

Each executed command leaves a row: its id, the SHA-256 of the envelope that
carried it, the signing key, its expiry and, once known, its result. The
router asks :meth:`ReplayStore.lookup` before executing:

- no row: the command is new; :meth:`claim` records it *before* anything is
  written to a node, :meth:`finish` stores the result;
- a row with the same envelope digest: a retry (the operator's, or MQTT's
  at-least-once delivery): not executed again, the stored result is answered;
- a row with another digest: a different command reusing the id: refused as
  ``replayed``.

Rows are kept until :data:`RETAIN` seconds after the command's expiry (after
expiry the command is refused as expired anyway; the margin covers a gateway
clock that is stepped backwards); older ones are purged at start and then at
most every :data:`PURGE_EVERY` seconds by :meth:`claim`, so that a gateway that
runs for years keeps about a day of ids, not all of them. A command that was
running when the gateway stopped is marked failed/``interrupted`` at the next
start: its effect on the nodes is unknown, and it is not run again (except a
roll-out, which the gateway resumes: its id stays running, ``resuming``).

Durability: WAL with ``synchronous=FULL``, so a claimed id survives a power
cut, not only a crash. The writes (and their fsync, 2 ms typical here, tens
of ms on a busy disk) run in one writer thread: :meth:`ReplayStore.claim` and
:meth:`ReplayStore.finish` return at once with a future that completes when
the row is durable, so the router waits for the claim *and* the audit entry
at the same time, and the event loop never blocks on the disk. Until then the
row is answered from memory (:meth:`ReplayStore.lookup` sees it at once);
lookups read through a second connection, which WAL lets read while the
writer commits.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2

RETAIN = 86400.0
"""Seconds a row is kept after its command's expiry."""
PURGE_EVERY = 3600.0
"""Seconds between two purges of expired ids while the gateway runs."""
_CACHE_KIB = 256  # page cache: a lookup touches one path of the id index; SQLite's 2 MiB default fills as ids pile up
INTERRUPTED = "interrupted"
"""Reason of the result of a command that was running when the gateway stopped."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    id TEXT PRIMARY KEY,
    digest BLOB NOT NULL,
    key TEXT NOT NULL,
    exp REAL NOT NULL,
    received REAL NOT NULL,
    result BLOB
);
CREATE INDEX IF NOT EXISTS seen_exp ON seen (exp);
"""


@dataclass(frozen=True)
class Seen:
    """What the store knows about an id: envelope digest, expiry, and the result (None while running)."""

    digest: bytes
    exp: float
    result: dict[str, Any] | None


class ReplayStore:
    """Executed command ids in the SQLite file at ``path`` (``""`` keeps them in memory only).

    Raises sqlite3.DatabaseError (with a clear message) if ``path`` is not such a store.
    ``resuming``: ids of commands the gateway goes on executing (they are not marked interrupted).
    """

    def __init__(self, path: str | Path, *, now: float, resuming: frozenset[str] | set[str] = frozenset()) -> None:
        self.path = str(path) if path else ":memory:"
        # The writer connection is used by the writer thread only (after this constructor).
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise sqlite3.DatabaseError(f"{self.path}: not a command replay store ({exc})") from None
        interrupted = {
            "status": "failed", "reason": INTERRUPTED,
            "detail": "the gateway stopped while executing this command; the nodes' state is unknown",
            "confirmed": [], "unconfirmed": [],
        }
        with self._db:
            for (cid,) in self._db.execute("SELECT id FROM seen WHERE result IS NULL").fetchall():
                if cid in resuming:
                    continue
                self._db.execute(
                    "UPDATE seen SET result = ? WHERE id = ?", (cbor2.dumps({"id": cid, **interrupted}), cid)
                )
        self._live: dict[str, Seen] = {}  # rows queued for the writer, not yet durable
        self._queued: dict[str, int] = {}  # writes queued per id
        self._lock = threading.Lock()  # _live and _queued: the loop thread and the writer thread
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="replay-writer")
        # An in-memory store has one connection only; a file gets a reader beside the writer.
        self._reader = self._db if self.path == ":memory:" else sqlite3.connect(self.path, isolation_level=None)
        self._purged_at = now
        self.purge(now)

    def lookup(self, command_id: str) -> Seen | None:
        """The row of ``command_id`` (durable or still being written), or None if it was never executed."""
        with self._lock:
            live = self._live.get(command_id)
        if live is not None:
            return live
        if self._reader is self._db:
            row = self._writer.submit(self._select, command_id).result()
        else:
            row = self._select(command_id, self._reader)
        if row is None:
            return None
        digest, exp, result = row
        return Seen(bytes(digest), float(exp), None if result is None else cbor2.loads(result))

    def _select(self, command_id: str, db: sqlite3.Connection | None = None) -> Any:
        return (db or self._db).execute("SELECT digest, exp, result FROM seen WHERE id = ?", (command_id,)).fetchone()

    def claim(
        self, command_id: str, digest: bytes, key_id: str, exp: float, now: float
    ) -> concurrent.futures.Future[None]:
        """Record ``command_id`` as executing; :meth:`lookup` sees it at once, the future says when it is durable.

        Wait for the future before any node is touched.
        """
        with self._lock:
            self._live[command_id] = Seen(digest, exp, None)
        claimed = self._write(command_id, (
            "INSERT INTO seen (id, digest, key, exp, received, result) VALUES (?, ?, ?, ?, ?, NULL)",
            (command_id, digest, key_id, exp, now),
        ))
        if now - self._purged_at >= PURGE_EVERY:
            self._purged_at = now
            self._writer.submit(self._delete_expired, now)  # behind the insert, off the command's path
        return claimed

    def finish(self, command_id: str, result: dict[str, Any]) -> concurrent.futures.Future[None]:
        """Store the result of a claimed command; the future completes when it is durable."""
        with self._lock:
            live = self._live.get(command_id)
            if live is not None:
                self._live[command_id] = Seen(live.digest, live.exp, result)
        return self._write(command_id, ("UPDATE seen SET result = ? WHERE id = ?", (cbor2.dumps(result), command_id)))

    def _write(self, command_id: str, statement: tuple[str, tuple[Any, ...]]) -> concurrent.futures.Future[None]:
        with self._lock:
            self._queued[command_id] = self._queued.get(command_id, 0) + 1

        def run() -> None:
            stored = False
            try:
                self._db.execute(*statement)
                stored = True
            finally:
                with self._lock:
                    left = self._queued.pop(command_id) - 1
                    if left:
                        self._queued[command_id] = left
                    elif stored:  # durable: the reader answers from now on (a failed one stays in memory)
                        self._live.pop(command_id, None)

        return self._writer.submit(run)

    def purge(self, now: float) -> int:
        """Forget ids whose command expired more than :data:`RETAIN` seconds before ``now``."""
        self._purged_at = now
        count: int = self._writer.submit(self._delete_expired, now).result()
        return count

    def _delete_expired(self, now: float) -> int:
        count: int = self._db.execute("DELETE FROM seen WHERE exp < ?", (now - RETAIN,)).rowcount
        return count

    def __len__(self) -> int:
        count: int = self._writer.submit(lambda: self._db.execute("SELECT count(*) FROM seen").fetchone()[0]).result()
        return count

    def close(self) -> None:
        """Finish the queued writes and close the database."""
        self._writer.shutdown(wait=True)
        if self._reader is not self._db:
            self._reader.close()
        self._db.close()
