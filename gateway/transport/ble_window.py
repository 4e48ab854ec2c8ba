"""Replay windows of the BLE nodes: which advert counters each node has already been heard with, on disk.

A node's encrypted adverts carry a 32-bit counter that it never repeats. The
gateway keeps, per node, the highest counter accepted and which of the
:data:`WINDOW` counters below it were accepted too (a bit mask), as IPsec
and DTLS do: an advert is new when its counter is above the highest, or
inside the window and not yet seen (a late advert: scanners can deliver
out of order). Anything else is a replay. The window is written to SQLite
before an advert's reading is handed on, so a restarted gateway refuses what
the previous run accepted. The same file keeps the counter of the gateway's
GATT commands to each node (never reused, also across restarts), and each
meter's water count unwrapped past BTHome's 32 bits (:meth:`ReplayWindows.unwrap_water`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["WATER_WRAP", "WINDOW", "ReplayWindows"]

WINDOW = 32
"""Counters below the highest that may still arrive late (and each only once)."""
_MASK = (1 << WINDOW) - 1
WATER_WRAP = 1 << 32
"""BTHome's ``water`` object counts millilitres in 32 bits: it wraps after 4,294,967.296 l."""

NEW = "new"
LATE = "late"
SEEN = "seen"
TOO_OLD = "too_old"


class ReplayWindows:
    """Per-node replay windows in an SQLite file (created if missing).

    Args:
        path: the file; ``":memory:"`` keeps the windows for this run only (tests).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ble_windows (node TEXT PRIMARY KEY, highest INTEGER NOT NULL,"
            " seen INTEGER NOT NULL)"
        )
        self._db.execute("CREATE TABLE IF NOT EXISTS ble_commands (node TEXT PRIMARY KEY, counter INTEGER NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS ble_water (node TEXT PRIMARY KEY, total INTEGER NOT NULL)")
        rows = self._db.execute("SELECT node, highest, seen FROM ble_windows")
        self._windows: dict[str, tuple[int, int]] = {node: (highest, seen) for node, highest, seen in rows}
        self._water: dict[str, int] = dict(self._db.execute("SELECT node, total FROM ble_water").fetchall())
        self._water_stored = dict(self._water)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def highest(self, node: str) -> int | None:
        """The highest counter accepted from ``node``, or None before its first advert."""
        window = self._windows.get(node)
        return None if window is None else window[0]

    def verdict(self, node: str, counter: int) -> str:
        """Whether ``counter`` is ``new``, ``late`` (inside the window, unseen), ``seen`` or ``too_old``."""
        window = self._windows.get(node)
        if window is None or counter > window[0]:
            return NEW
        highest, seen = window
        back = highest - counter
        if back >= WINDOW:
            return TOO_OLD
        return SEEN if seen >> back & 1 else LATE

    def admit(self, node: str, counter: int) -> str:
        """Record ``counter`` as accepted if it is new or late (on disk, before returning); the verdict."""
        verdict = self.verdict(node, counter)
        if verdict not in (NEW, LATE):
            return verdict
        window = self._windows.get(node)
        if window is None:
            highest, seen = counter, 1
        elif counter > window[0]:
            shift = counter - window[0]
            highest = counter
            seen = ((window[1] << shift) | 1) & _MASK if shift < WINDOW else 1
        else:
            highest, seen = window[0], window[1] | 1 << (window[0] - counter)
        self._db.execute(
            "INSERT INTO ble_windows (node, highest, seen) VALUES (?, ?, ?)"
            " ON CONFLICT(node) DO UPDATE SET highest = excluded.highest, seen = excluded.seen",
            (node, highest, seen),
        )
        self._windows[node] = (highest, seen)
        return verdict

    def unwrap_water(self, node: str, raw: int, *, keep: bool = True) -> int:
        """The whole count behind ``node``'s 32-bit water object ``raw`` (millilitres).

        The count is the one nearest the last kept whose low 32 bits are ``raw``, never below ``raw``: a
        wrap adds 2**32, and a late advert from before the wrap maps back below it. With ``keep`` (an advert
        newer than all before) the count becomes the last kept; it is written to disk, before it is returned,
        when it enters another quarter of the 32-bit range (and at a node's first): a restart then unwraps
        from within 2**30 of the true count, well inside the half range the nearest choice needs, at one
        SQLite commit per quarter wrap (about 1,074 m3) instead of one per advert.
        """
        last = self._water.get(node)
        if last is None:
            total = raw
        else:
            base = last - last % WATER_WRAP + raw
            total = min((c for c in (base - WATER_WRAP, base, base + WATER_WRAP) if c >= raw),
                        key=lambda c: abs(c - last))
        if keep and total != last:
            self._water[node] = total
        stored = self._water_stored.get(node)
        if keep and (stored is None or stored >> 30 != total >> 30):
            self._water_stored[node] = total
            self._db.execute(
                "INSERT INTO ble_water (node, total) VALUES (?, ?)"
                " ON CONFLICT(node) DO UPDATE SET total = excluded.total",
                (node, total),
            )
        return total

    def next_command_counter(self, node: str) -> int:
        """The counter for the next GATT command to ``node``: one above the last, on disk before it is used."""
        row = self._db.execute("SELECT counter FROM ble_commands WHERE node = ?", (node,)).fetchone()
        counter = (row[0] if row else 0) + 1
        self._db.execute(
            "INSERT INTO ble_commands (node, counter) VALUES (?, ?)"
            " ON CONFLICT(node) DO UPDATE SET counter = excluded.counter",
            (node, counter),
        )
        return int(counter)
