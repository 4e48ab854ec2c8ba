"""The outbox's line: which stored entries are handed out next, kept in memory beside the SQLite table.

Entries are handed out oldest first (by id). An entry is in one of these places:

- *in flight*: handed out (by ``take`` or ``put_held``), not yet acked, nacked or released;
- *given back*: nacked or released; it goes out again in its place in line, ahead of younger entries;
- *acked*: gone, or waiting for its delete (``gone``, kept by the outbox);
- *new*: above the scan mark ``high``, never met by a scan since the outbox was opened.

Every id at or below ``high`` is in flight, given back, acked or deleted, so a scan for new rows
starts after ``high``. Given-back ids are kept in a heap (oldest first) with a set beside it for
membership; a heap copy whose id left the set is stale and skipped. Given-back ids above the mark
(live entries released before a scan reached them) are taken when the scan reaches them, in order.
Nothing here survives a restart: after one, every stored entry is new again.
"""

from __future__ import annotations

import heapq
import json
import sqlite3
from collections.abc import Iterable

Row = tuple[int, str, int, int, float, bytes, int, int]
"""The columns of :data:`COLUMNS`."""
COLUMNS = "id, node, seq, kind, created, payload, attempts, historical"
IN_IDS = "IN (SELECT value FROM json_each(?))"
"""A set of ids as one parameter (bound with :func:`ids_param`): the statement text is the same for every count.

One ``?`` per id made a new text for each count; sqlite3 keeps up to 128 prepared statements per
connection, about 45 KiB each at 250 ids, so resident memory crept for hours as new counts came up.
"""


def ids_param(ids: Iterable[int]) -> str:
    """The value bound to :data:`IN_IDS`: the ids as a JSON array."""
    return json.dumps(list(ids))


class Line:
    """The in-memory circulation of one outbox's entries (see the module docstring)."""

    def __init__(self) -> None:
        self.inflight: set[int] = set()
        self.high = 0
        self._redo: list[int] = []  # heap of given-back ids
        self._redo_set: set[int] = set()

    def give_back(self, ids: Iterable[int]) -> list[int]:
        """Move in-flight ids back to the line; ids not in flight are ignored. Returns those moved."""
        back = []
        for i in ids:
            if i in self.inflight:
                self.inflight.discard(i)
                self.push(i)
                back.append(i)
        return back

    def push(self, rid: int) -> None:
        """Put ``rid`` in the given-back line (once)."""
        if rid not in self._redo_set:
            self._redo_set.add(rid)
            heapq.heappush(self._redo, rid)

    def take_given_back(
        self, db: sqlite3.Connection, limit: int, skip: set[int], max_id: int | None, gone: set[int]
    ) -> list[Row]:
        """Given-back rows at or below the scan mark, oldest first, up to ``max_id``; ``skip`` stays in line."""
        rows: list[Row] = []
        keep: list[int] = []  # popped but staying in line
        chosen: list[int] = []
        top = self.high if max_id is None else min(self.high, max_id)
        try:
            while self._redo and len(rows) < limit:
                ids: list[int] = []
                while self._redo and len(ids) < limit - len(rows) and self._redo[0] <= top:
                    rid = heapq.heappop(self._redo)
                    if rid not in self._redo_set:
                        continue
                    self._redo_set.discard(rid)
                    if rid in skip:
                        keep.append(rid)
                    elif rid not in self.inflight and rid not in gone:
                        ids.append(rid)
                if not ids:
                    break
                chosen += ids
                # rows evicted meanwhile are simply missing here, and so forgotten
                rows += db.execute(f"SELECT {COLUMNS} FROM records WHERE id {IN_IDS} ORDER BY id", (ids_param(ids),))
        except sqlite3.Error:
            keep += chosen
            raise
        finally:
            for rid in keep:
                self.push(rid)
        return rows

    def take_new(
        self, db: sqlite3.Connection, limit: int, skip: set[int], top: int, gone: set[int]
    ) -> list[Row]:
        """Rows above the scan mark up to ``top``, oldest first; skipped ones join the given-back line.

        Rows met in flight (held at put) are passed over; given-back rows met here are taken now, in
        their place in line.
        """
        rows: list[Row] = []
        while len(rows) < limit and self.high < top:
            page = limit - len(rows) + len(skip) + 16
            fetched: list[Row] = db.execute(
                f"SELECT {COLUMNS} FROM records WHERE id > ? AND id <= ? ORDER BY id LIMIT ?", (self.high, top, page)
            ).fetchall()
            if not fetched:
                self.high = top
                break
            for row in fetched:
                if len(rows) >= limit:
                    break
                rid = row[0]
                self.high = rid
                if rid in self.inflight or rid in gone:
                    continue
                self._redo_set.discard(rid)  # reached in order: its heap copy goes stale
                if rid in skip:
                    self.push(rid)
                else:
                    rows.append(row)
            else:
                if len(fetched) < page:
                    self.high = top
        return rows
