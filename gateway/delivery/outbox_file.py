"""The outbox's SQLite file: schema, pragmas, the checks made at open, and what SQLite errors mean.

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

"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import NamedTuple

from gateway.delivery.records import Kind, OutboxError

SCHEMA_VERSION = 2
APPLICATION_ID = 0x53454F42  # "SEOB": tells an outbox from any other SQLite file
PAGE_SIZE = 1024  # small pages: a one-row transaction appends ~1 KiB per page it touches
ROW_OVERHEAD = 24  # bytes per row beyond payload and node (record header, integers, page slack), measured
DEFAULT_BUDGET_BYTES = 256 * 1024 * 1024
RECENT = 32  # seqs remembered per (node, kind) to refuse duplicates
WAL_LIMIT = 8 * 1024 * 1024  # journal_size_limit: the WAL is truncated to this after a checkpoint
CACHE_KIB = 512  # page cache: the hot pages are the table's ends; SQLite's 2 MiB default is resident memory
BUSY_TIMEOUT_S = 1.0
SQLITE_BUSY, SQLITE_LOCKED, SQLITE_CORRUPT, SQLITE_FULL, SQLITE_NOTADB = 5, 6, 11, 13, 26

# What the payloads' schema ids mean, kept with them: a record outlives the gateway version that wrote it.
SCHEMAS_TABLE = "CREATE TABLE IF NOT EXISTS schemas (id BLOB PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID"
SCHEMA = (
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
    SCHEMAS_TABLE,
    f"PRAGMA application_id = {APPLICATION_ID}",
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)
# OR IGNORE: schema-1 files still carry a UNIQUE (node, seq, kind) constraint.
INSERT = "INSERT OR IGNORE INTO records (node, seq, kind, created, payload, historical) VALUES (?, ?, ?, ?, ?, ?)"
ROW_BYTES = "length(payload) + length(node)"
CURSOR = "cursor."


def code(exc: sqlite3.Error) -> int:
    """The primary SQLite result code of an error (0 if the driver did not attach one)."""
    return int(getattr(exc, "sqlite_errorcode", 0)) & 0xFF


def is_full(exc: BaseException) -> bool:
    """Whether an error is SQLite's "database or disk is full" (a full disk or max_page_count)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        code(exc) == SQLITE_FULL or "database or disk is full" in str(exc)
    )



def failure(path: Path, what: str, exc: sqlite3.Error) -> OutboxError:
    """An OutboxError that says what went wrong in words an operator can act on."""
    number = code(exc)
    if number in (SQLITE_BUSY, SQLITE_LOCKED):
        problem = f"{what}: in use by another process ({exc})"
    elif number in (SQLITE_CORRUPT, SQLITE_NOTADB):
        problem = f"{what}: corrupt or not an SQLite database ({exc})"
    else:
        problem = f"{what} failed ({exc})"
    return OutboxError(path, problem)


def rollback(db: sqlite3.Connection) -> None:
    """Roll back the open transaction, if SQLite has not done so already (SQLITE_FULL)."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def sequence(db: sqlite3.Connection) -> int:
    """The highest id ever given to a record (AUTOINCREMENT's counter)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    return int(row[0]) if row else 0


class Stored(NamedTuple):
    """What an outbox file remembers, read at open."""

    duplicates: int
    session: int
    dropped: dict[Kind, int]
    cursors: dict[str, int]
    rows: int
    size: int
    last_id: int
    newest: list[tuple[str, int, int]]
    """``(node, kind, seq)`` of the newest records, oldest first (to refuse duplicates)."""


def open_file(db: sqlite3.Connection, path: Path, sync: str) -> Stored:
    """Check or create the schema, set the pragmas and read what the file remembers.

    Raises:
        OutboxError: not an outbox, a newer or incomplete schema, or no WAL.
        sqlite3.Error: SQLite could not read or write the file (see :func:`failure`).
    """
    # One process owns the outbox: a second gateway on the same file would send everything twice.
    db.execute("PRAGMA locking_mode = EXCLUSIVE")
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    fresh = app_id == 0 and version == 0 and not tables
    if not fresh:
        if app_id != APPLICATION_ID:
            names = ", ".join(sorted(tables)) or "none"
            raise OutboxError(path, f"not a streetedge outbox (application_id {app_id:#x}, tables: {names})")
        if version > SCHEMA_VERSION:
            raise OutboxError(
                path,
                f"schema version {version} is newer than this gateway's ({SCHEMA_VERSION}); "
                "upgrade the gateway or move the file away",
            )
        if version < 1 or not {"records", "meta"} <= tables:
            raise OutboxError(path, f"incomplete outbox schema (version {version})")
    else:
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only before the first table and WAL
    try:  # acks and re-takes bind their ids as one JSON array (handout.IN_IDS)
        db.execute("SELECT count(*) FROM json_each('[]')").fetchone()
    except sqlite3.OperationalError:
        raise OutboxError(
            path, f"SQLite {sqlite3.sqlite_version} lacks json_each, which the outbox needs (built in: 3.38+)"
        ) from None
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise OutboxError(path, f"cannot use WAL mode (journal_mode stays {mode!r})")
    db.execute(f"PRAGMA synchronous = {sync}")
    db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
    db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    if fresh:
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA:
                db.execute(statement)
            db.execute("COMMIT")
        except BaseException:
            rollback(db)
            raise
    if "schemas" not in tables and not fresh:  # a file from before the table existed
        db.execute(SCHEMAS_TABLE)
    duplicates = session = 0
    dropped = {Kind.READING: 0, Kind.EVENT: 0}
    cursors: dict[str, int] = {}
    for key, value in db.execute("SELECT key, value FROM meta"):
        if key == "duplicates":
            duplicates = int(value)
        elif key == "session":
            session = int(value)
        elif key.startswith("dropped."):
            dropped[Kind[key[8:].upper()]] = int(value)
        elif key.startswith(CURSOR):
            cursors[key[len(CURSOR) :]] = int(value)
    count, total = db.execute(f"SELECT count(*), total({ROW_BYTES}) FROM records").fetchone()
    newest = db.execute("SELECT node, kind, seq FROM records ORDER BY id DESC LIMIT ?", (RECENT * 256,)).fetchall()
    return Stored(duplicates, session, dropped, cursors, int(count), int(total) + ROW_OVERHEAD * int(count),
                  sequence(db), [(str(n), int(k), int(q)) for n, k, q in reversed(newest)])
