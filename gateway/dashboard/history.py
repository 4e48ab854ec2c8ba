"""The dashboard's bounded local history (SQLite): the plotted values, and who gave which command.

What it keeps: every ``history_interval`` seconds, one sample of each plotted value
(:func:`gateway.dashboard.view.plotted`: a lamp's power and energy, a meter's flow and volume, an
environment node's PM2.5, PM10 and noise) of every online node, for ``history_hours``; older samples
are deleted at each sampling. So the file holds at most
``nodes x values x history_hours x 3600 / history_interval`` rows: 250 lamps, 2 values, 6 hours,
30 s: 360,000 rows, 22 MB with its indexes (61 bytes a row, measured), each sampling 16-25 ms of a
worker thread (``streetedge bench dashboard``). The street's totals per role and value are kept beside
(one row per sampling), so a street plot reads 720 rows, not every node's.
Commands given from the page (who, when, what, the result) are kept too, the last :data:`ACTIONS_KEPT`,
and the energy saved per street and night (:mod:`gateway.dashboard.analytics`), a few nights per street.

One connection, used from a worker thread (``asyncio.to_thread``) under a lock, so that the gateway's
event loop never waits for the disk.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from typing import Any

ACTIONS_KEPT = 1000
"""Commands from the page remembered, newest kept."""
MAX_POINTS = 720
"""Points a plot gets at most; longer series are thinned to this many buckets."""

_SCHEMA = """
PRAGMA journal_mode=WAL;
PRAGMA synchronous=NORMAL;
CREATE TABLE IF NOT EXISTS samples (
    node TEXT NOT NULL, name TEXT NOT NULL, ts REAL NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (node, name, ts)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS samples_by_time ON samples (ts);
CREATE TABLE IF NOT EXISTS totals (
    role TEXT NOT NULL, name TEXT NOT NULL, ts REAL NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (role, name, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS energy (
    street TEXT NOT NULL, night INTEGER NOT NULL, figures TEXT NOT NULL, PRIMARY KEY (street, night)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS actions (
    seq INTEGER PRIMARY KEY, ts REAL NOT NULL, user TEXT NOT NULL, id TEXT NOT NULL, target TEXT NOT NULL,
    action TEXT NOT NULL, params TEXT NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL
);
"""

Sample = tuple[str, str, str, float]
"""(node, role, value name, value)."""


class History:
    """The samples and actions file.

    Args:
        path: the SQLite file; "" keeps the history in memory (gone at restart).
        hours: hours of samples kept.
    """

    def __init__(self, path: str, hours: float) -> None:
        self.hours = hours
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path or ":memory:", check_same_thread=False, isolation_level=None)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def add(self, when: float, samples: Iterable[Sample]) -> None:
        """Store one sampling of the street, and delete what has become too old (blocking: see :meth:`add_async`).

        The street's total of each role's value is stored with it, so that a street plot reads a few
        hundred rows, not every node's.
        """
        samples = list(samples)
        rows = [(node, name, when, float(value)) for node, _, name, value in samples]
        totals: dict[tuple[str, str], float] = {}
        for _, role, name, value in samples:
            totals[role, name] = totals.get((role, name), 0.0) + float(value)
        oldest = when - self.hours * 3600
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?)", rows)
            self._db.executemany("INSERT OR REPLACE INTO totals VALUES (?, ?, ?, ?)",
                                 [(role, name, when, value) for (role, name), value in totals.items()])
            self._db.execute("DELETE FROM samples WHERE ts < ?", (oldest,))
            self._db.execute("DELETE FROM totals WHERE ts < ?", (oldest,))

    async def add_async(self, when: float, samples: Iterable[Sample]) -> None:
        """:meth:`add` in a worker thread."""
        await asyncio.to_thread(self.add, when, list(samples))

    def series(self, name: str, *, node: str | None = None, role: str | None = None,
               since: float | None = None) -> list[tuple[float, float]]:
        """``(ts, value)`` of one node's value, or the street's total of a role's value, oldest first.

        Totals add the nodes sampled at the same moment; a series longer than :data:`MAX_POINTS` is
        thinned to that many buckets (their mean).
        """
        since = time.time() - self.hours * 3600 if since is None else since
        with self._lock:
            if node is not None:
                rows = self._db.execute(
                    "SELECT ts, value FROM samples WHERE node = ? AND name = ? AND ts >= ? ORDER BY ts",
                    (node, name, since)).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT ts, value FROM totals WHERE role = ? AND name = ? AND ts >= ? ORDER BY ts",
                    (role or "", name, since)).fetchall()
        return _thin([(float(t), float(v)) for t, v in rows])

    def rows(self) -> int:
        """Samples stored now."""
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM samples").fetchone()[0])

    def add_action(self, entry: dict[str, Any]) -> None:
        """Remember one command given from the page (keys as in :meth:`actions`)."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute(
                "INSERT INTO actions (ts, user, id, target, action, params, status, detail) "
                "VALUES (:ts, :user, :id, :target, :action, :params, :status, :detail)", entry)
            self._db.execute("DELETE FROM actions WHERE seq <= (SELECT MAX(seq) FROM actions) - ?", (ACTIONS_KEPT,))

    def actions(self, limit: int = 50) -> list[dict[str, Any]]:
        """The last commands given from the page, newest first."""
        with self._lock:
            cursor = self._db.execute(
                "SELECT ts, user, id, target, action, params, status, detail FROM actions ORDER BY seq DESC LIMIT ?",
                (limit,))
            names = [c[0] for c in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


    def keep_energy(self, figures: dict[str, Any], nights: int) -> None:
        """Remember one street's figures for one night (keys ``street``, ``night``, ...); keep its last ``nights``."""
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.execute("INSERT OR REPLACE INTO energy VALUES (?, ?, ?)",
                             (figures["street"], figures["night"], json.dumps(figures)))
            self._db.execute("DELETE FROM energy WHERE street = ? AND night NOT IN "
                             "(SELECT night FROM energy WHERE street = ? ORDER BY night DESC LIMIT ?)",
                             (figures["street"], figures["street"], nights))

    def energy(self) -> list[dict[str, Any]]:
        """Every street's remembered figures, by street, then night."""
        with self._lock:
            rows = self._db.execute("SELECT figures FROM energy ORDER BY street, night").fetchall()
        return [json.loads(row[0]) for row in rows]


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    step = len(points) / MAX_POINTS
    thinned = []
    for i in range(MAX_POINTS):
        bucket = points[int(i * step):int((i + 1) * step)] or [points[-1]]
        thinned.append((bucket[-1][0], sum(v for _, v in bucket) / len(bucket)))
    return thinned
