"""The detectors' memory: per node, what each detector learned, in one SQLite file that survives a restart.

A detector's state is a small JSON document (baselines per dim level, the
night's running figures, streaks of nights). The engine saves the states that
changed every ``save_every`` seconds of reading time and on close, in one
transaction, so a crash costs at most that much learning, never a baseline.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from gateway.errors import GatewayError

__all__ = ["BaselineError", "BaselineStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS baselines (
    node TEXT NOT NULL, detector TEXT NOT NULL, state TEXT NOT NULL, PRIMARY KEY (node, detector)
) WITHOUT ROWID
"""


class BaselineError(GatewayError):
    """The baselines file cannot be used (not SQLite, unreadable, or a state in it is not JSON)."""


class BaselineStore:
    """Detector states by ``(node, detector)``; ``":memory:"`` keeps them for the process only."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise BaselineError(f"baselines {self.path}: {exc}") from exc

    def load(self) -> dict[tuple[str, str], dict[str, Any]]:
        """Every stored state."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for node, detector, text in self._db.execute("SELECT node, detector, state FROM baselines"):
            try:
                out[(node, detector)] = json.loads(text)
            except ValueError as exc:
                raise BaselineError(f"baselines {self.path}: state of {node}/{detector} is not JSON: {exc}") from exc
        return out

    def save(self, states: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Store these states (replacing older ones) in one transaction."""
        if not states:
            return
        rows = [(node, det, json.dumps(state, separators=(",", ":"))) for (node, det), state in states.items()]
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO baselines (node, detector, state) VALUES (?, ?, ?)", rows)

    def forget(self, node: str) -> None:
        """Drop what was learned about a node (a replaced lamp starts a new baseline)."""
        with self._db:
            self._db.execute("DELETE FROM baselines WHERE node = ?", (node,))

    def close(self) -> None:
        """Close the file."""
        self._db.close()
