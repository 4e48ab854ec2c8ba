"""The roll-outs a gateway runs, kept in SQLite so that a gateway stop or crash does not end them.

A roll-out is stored when its command starts executing: the package's image
hash, the nodes in roll-out order (canaries first, with bus and unit), how
many are canaries and ``stop_on_failure``. Each node's state moves on as the
roll-out does::

    pending -> started -> transferred -> committing -> confirmed
                                    \\-> failed | rolled_back | skipped

``started`` also keeps the node's active slot and rollback count read before
anything was written to it, so that after a restart the gateway can tell a
node that switched to the new image (it waits for its confirmation, and
never sends the image again) from one that still takes chunks (its transfer
resumes where the node stands). A roll-out is ``running`` until it ends
``finished`` or ``cancelled``; at start the daemon resumes every ``running``
one (:meth:`RolloutStore.running`).

Durability: WAL with ``synchronous=FULL``, as the command replay store: a
state written here survives a power cut. A roll-out writes a handful of
rows per node, so the calls are synchronous (:class:`RolloutStore` is used
from one writer thread by :mod:`gateway.update.rollout_journal`).

A file that is not such a store (another file, a torn or garbled database, a
row no version of the gateway writes) raises :class:`RolloutStoreError`
naming the file and what is wrong; the file is left as it was.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError
from gateway.update.rollout import NodeState, Target
from gateway.update.store import DIGEST

__all__ = ["CANCELLED", "FINISHED", "KEEP", "NODE_STATES", "RUNNING", "RolloutStore", "RolloutStoreError",
           "RolloutStoreWriteError", "StoredRollout",
           "rollouts_path"]

RUNNING, FINISHED, CANCELLED = "running", "finished", "cancelled"
ROLLOUT_STATES = (RUNNING, FINISHED, CANCELLED)
NODE_STATES = ("pending", "started", "transferred", "committing", "confirmed", "failed", "rolled_back", "skipped")
"""Every state a node of a roll-out can be in, in the order a roll-out moves through them."""
KEEP = 30 * 86400.0
"""Seconds an ended roll-out is kept (for ``streetedge`` and the operator) before it is purged."""
_FORMAT = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS rollout (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    package TEXT NOT NULL,
    canaries INTEGER NOT NULL,
    stop_on_failure INTEGER NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    started REAL NOT NULL,
    ended REAL
);
CREATE TABLE IF NOT EXISTS node (
    rollout INTEGER NOT NULL REFERENCES rollout (number) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    node TEXT NOT NULL,
    bus TEXT NOT NULL,
    unit INTEGER NOT NULL,
    state TEXT NOT NULL,
    slot INTEGER,
    rolled INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (rollout, position)
);
"""


def rollouts_path(replay_db: str) -> str:
    """Where the roll-outs are kept: beside the command replay store (``commands.sqlite`` ->
    ``commands-rollouts.sqlite``); none (``""``: in memory, nothing resumed) for a gateway without one."""
    if not replay_db:
        return ""
    path = Path(replay_db)
    return str(path.with_name(f"{path.stem}-rollouts{path.suffix}"))


class RolloutStoreError(GatewayError):
    """The roll-out store cannot be used: the file is no such store, or holds what no gateway wrote."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class RolloutStoreWriteError(GatewayError, sqlite3.OperationalError):
    """A write to the roll-out store failed; ``store`` names it for the command's result (an SQLite error
    still, so the router's handling of a store that cannot be written applies)."""

    store = "roll-out store"


@dataclass(frozen=True)
class StoredRollout:
    """A roll-out as stored: its command id and number, the plan, and each node's state (in roll-out order)."""

    id: str
    number: int
    package: str
    targets: list[Target]
    canaries: int
    stop_on_failure: bool
    state: str
    nodes: dict[str, NodeState]


class RolloutStore:
    """Roll-outs in the SQLite file at ``path`` (``""``: in memory, so nothing survives a restart).

    Raises RolloutStoreError if ``path`` is not a roll-out store (the file is not touched).
    """

    def __init__(self, path: str | Path, *, now: float) -> None:
        self.path = str(path) if path else ":memory:"
        self._lock = threading.Lock()  # one connection, used from the writer thread and the loop's reads
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise RolloutStoreError(self.path, f"cannot open ({exc})") from None
        try:
            self._open(now)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise RolloutStoreError(self.path, f"not a roll-out store, or damaged ({exc}); left as it is") from None
        except RolloutStoreError:
            self._db.close()
            raise

    def _open(self, now: float) -> None:
        db = self._db
        # Read before anything is written: a foreign or damaged file must stay as it is.
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if version not in (0, _FORMAT) or (version == 0 and tables - {"sqlite_sequence"}):
            raise RolloutStoreError(self.path, f"not a roll-out store (format {version}, tables "
                                               f"{', '.join(sorted(tables)) or 'none'}); left as it is")
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise RolloutStoreError(self.path, f"damaged ({check}); left as it is")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version={_FORMAT}")
        self.running()  # every stored row checked now, at start, not when a resume needs it
        with self._lock, db:
            db.execute("DELETE FROM rollout WHERE state != ? AND ended < ?", (RUNNING, now - KEEP))

    def begin(self, command_id: str, package: str, targets: list[Target], canaries: int, stop_on_failure: bool,
              now: float) -> int:
        """Store a new running roll-out, every node ``pending``; its number (which node events use).

        An ended roll-out of the same command id (kept longer than the replay store keeps ids) gives way.
        """
        with self._lock, self._db:
            self._db.execute("DELETE FROM rollout WHERE id = ? AND state != ?", (command_id, RUNNING))
            cursor = self._db.execute(
                "INSERT INTO rollout (id, package, canaries, stop_on_failure, state, started) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (command_id, package, canaries, int(stop_on_failure), RUNNING, now))
            number = cursor.lastrowid
            assert number is not None
            self._db.executemany(
                "INSERT INTO node (rollout, position, node, bus, unit, state) VALUES (?, ?, ?, ?, ?, 'pending')",
                [(number, i, t.node, t.bus, t.unit) for i, t in enumerate(targets)])
        return number

    def node(self, number: int, node: str, state: NodeState) -> None:
        """Record a node's new state (durable on return)."""
        if state.state not in NODE_STATES:
            raise ValueError(f"unknown node state {state.state!r}")
        with self._lock, self._db:
            changed = self._db.execute(
                "UPDATE node SET state = ?, slot = ?, rolled = ?, detail = ? WHERE rollout = ? AND node = ?",
                (state.state, state.slot, state.rolled, state.detail, number, node)).rowcount
        if not changed:
            raise KeyError(f"roll-out {number} has no node {node!r}")

    def end(self, command_id: str, state: str, detail: str, now: float) -> None:
        """Mark a roll-out ``finished`` or ``cancelled``: it is never resumed."""
        if state not in (FINISHED, CANCELLED):
            raise ValueError(f"a roll-out ends finished or cancelled, not {state!r}")
        with self._lock, self._db:
            self._db.execute("UPDATE rollout SET state = ?, detail = ?, ended = ? WHERE id = ? AND state = ?",
                             (state, detail, now, command_id, RUNNING))

    def get(self, command_id: str) -> StoredRollout | None:
        """The roll-out of command ``command_id``, or None."""
        with self._lock:
            row = self._db.execute("SELECT number, id, package, canaries, stop_on_failure, state FROM rollout "
                                   "WHERE id = ?", (command_id,)).fetchone()
        return None if row is None else self._load(row)

    def running(self) -> list[StoredRollout]:
        """The roll-outs that were running when the gateway stopped, oldest first (to be resumed)."""
        with self._lock:
            rows = self._db.execute("SELECT number, id, package, canaries, stop_on_failure, state FROM rollout "
                                    "ORDER BY number").fetchall()
        loaded = [self._load(row) for row in rows]  # every row checked, the ended ones too
        return [r for r in loaded if r.state == RUNNING]

    def _load(self, row: tuple[object, ...]) -> StoredRollout:
        number, cid, package, canaries, stop, state = row
        where = f"roll-out {cid!r}"
        if not isinstance(number, int) or not isinstance(cid, str) or state not in ROLLOUT_STATES:
            raise RolloutStoreError(self.path, f"{where}: state {state!r} is none this gateway writes")
        if not isinstance(package, str) or not DIGEST.fullmatch(package):
            raise RolloutStoreError(self.path, f"{where}: package {package!r} is not an image hash")
        with self._lock:
            nodes = self._db.execute("SELECT position, node, bus, unit, state, slot, rolled, detail FROM node "
                                     "WHERE rollout = ? ORDER BY position", (number,)).fetchall()
        targets: list[Target] = []
        states: dict[str, NodeState] = {}
        for position, node, bus, unit, nstate, slot, rolled, detail in nodes:
            if position != len(targets) or nstate not in NODE_STATES or not isinstance(unit, int) \
                    or not isinstance(node, str) or not isinstance(bus, str):
                raise RolloutStoreError(self.path, f"{where}: node row {position} ({node!r}, state {nstate!r}) "
                                                   "is none this gateway writes")
            targets.append(Target(node, bus, unit))
            states[node] = NodeState(nstate, slot, rolled, detail)
        if not isinstance(canaries, int) or not 0 <= canaries <= len(targets) or not targets:
            raise RolloutStoreError(self.path, f"{where}: {canaries!r} canaries among {len(targets)} node(s)")
        return StoredRollout(cid, number, package, targets, canaries, bool(stop), str(state), states)

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()
