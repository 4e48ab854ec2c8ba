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
start: its effect on the nodes is unknown, and it is not run again.

Durability: WAL with ``synchronous=FULL``, so a claimed id survives a power
cut, not only a crash (a few hundred microseconds per command).
"""

from __future__ import annotations

import sqlite3
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
    """

    def __init__(self, path: str | Path, *, now: float) -> None:
        self.path = str(path) if path else ":memory:"
        self._db = sqlite3.connect(self.path, isolation_level=None)
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
                self._db.execute(
                    "UPDATE seen SET result = ? WHERE id = ?", (cbor2.dumps({"id": cid, **interrupted}), cid)
                )
        self._purged_at = now
        self.purge(now)

    def lookup(self, command_id: str) -> Seen | None:
        """The row of ``command_id``, or None if it was never executed (or was purged)."""
        row = self._db.execute("SELECT digest, exp, result FROM seen WHERE id = ?", (command_id,)).fetchone()
        if row is None:
            return None
        digest, exp, result = row
        return Seen(bytes(digest), float(exp), None if result is None else cbor2.loads(result))

    def claim(self, command_id: str, digest: bytes, key_id: str, exp: float, now: float) -> None:
        """Record ``command_id`` as executing (before any node is touched); durable on return."""
        self._db.execute(
            "INSERT INTO seen (id, digest, key, exp, received, result) VALUES (?, ?, ?, ?, ?, NULL)",
            (command_id, digest, key_id, exp, now),
        )
        if now - self._purged_at >= PURGE_EVERY:
            self.purge(now)

    def finish(self, command_id: str, result: dict[str, Any]) -> None:
        """Store the result of a claimed command."""
        self._db.execute("UPDATE seen SET result = ? WHERE id = ?", (cbor2.dumps(result), command_id))

    def purge(self, now: float) -> int:
        """Forget ids whose command expired more than :data:`RETAIN` seconds before ``now``."""
        self._purged_at = now
        return self._db.execute("DELETE FROM seen WHERE exp < ?", (now - RETAIN,)).rowcount

    def __len__(self) -> int:
        count: int = self._db.execute("SELECT count(*) FROM seen").fetchone()[0]
        return count

    def close(self) -> None:
        """Close the database."""
        self._db.close()
