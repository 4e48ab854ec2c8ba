"""When to poll what: earliest-due-first per bus, each node on its own rhythm, no catch-up bursts.

:class:`Schedule` is the pure part (no clock of its own, no I/O): every node
has a grid of due times ``t0, t0 + interval, t0 + 2 * interval ...``. A worker
:meth:`~Schedule.take` s the node whose due time is earliest; if that due time
slipped past one or more later grid points (the bus, or the CPU, could not keep
up), those slots are *skipped* and counted, never queued: an overloaded bus
polls every node as often as it can, in turn, and says how much it missed. A
node's next due time is the grid point after the slot just taken, so a node
keeps its rhythm through short hiccups.

Fairness: on one bus the earliest due slot always goes first, so under overload
nodes are served round-robin weighted by their rates; buses are independent
schedules served by their own workers, in parallel.

:class:`Gate` is the back-pressure valve between the uplink and the pollers:
while it is closed (the outbox or publish queue is full) workers wait, and the
slots that pass meanwhile are counted as skipped for ``backpressure``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Iterable

OVERRUN = "overrun"
"""Skip reason: the node's slot passed while its bus (or the CPU) was busy."""
BACKPRESSURE = "backpressure"
"""Skip reason: the slot passed while the uplink held the pollers back."""


class Slot:
    """A node's place in a :class:`Schedule` (mutable; owned by the schedule)."""

    __slots__ = ("due", "interval", "key", "removed")

    def __init__(self, key: str, interval: float, due: float) -> None:
        self.key = key
        self.interval = interval
        self.due = due
        self.removed = False


class Schedule:
    """Due times of the nodes of one bus.

    Args:
        entries: ``(key, interval)`` of each node; all are due at ``start``.
        start: the first due time (a monotonic clock reading).
    """

    def __init__(self, entries: Iterable[tuple[str, float]] = (), start: float = 0.0) -> None:
        self._heap: list[tuple[float, int, Slot]] = []
        self._slots: dict[str, Slot] = {}
        self._order = itertools.count()
        for key, interval in entries:
            self.add(key, interval, start)

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, key: object) -> bool:
        return key in self._slots

    def add(self, key: str, interval: float, due: float) -> None:
        """Schedule a node (ValueError if it is there already or the interval is not positive)."""
        if key in self._slots:
            raise ValueError(f"{key!r} is already scheduled")
        if not interval > 0:
            raise ValueError(f"{key!r}: interval must be positive, got {interval!r}")
        slot = Slot(key, interval, due)
        self._slots[key] = slot
        heapq.heappush(self._heap, (due, next(self._order), slot))

    def remove(self, key: str) -> None:
        """Unschedule a node (a poll in progress may still finish; its :meth:`done` is ignored)."""
        slot = self._slots.pop(key)
        slot.removed = True

    def next_due(self) -> float | None:
        """The earliest due time, or None when no node waits (all taken, or none scheduled)."""
        heap = self._heap
        while heap and heap[0][2].removed:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def take(self, now: float) -> tuple[str, int] | None:
        """The earliest node due at ``now`` and the slots it skipped; None if none is due yet.

        The node leaves the queue until :meth:`done` puts it back.
        """
        due = self.next_due()
        if due is None or due > now:
            return None
        _, _, slot = heapq.heappop(self._heap)
        missed = int((now - slot.due) // slot.interval)
        slot.due += missed * slot.interval  # the latest grid point not after now: this poll's slot
        return slot.key, missed

    def done(self, key: str, interval: float | None = None) -> None:
        """Put a taken node back, due one interval after its slot (``interval`` may change it)."""
        slot = self._slots.get(key)
        if slot is None:  # removed while its poll ran
            return
        if interval is not None and interval > 0 and interval != slot.interval:
            slot.interval = interval
        slot.due += slot.interval
        heapq.heappush(self._heap, (slot.due, next(self._order), slot))

    def skip(self, key: str) -> None:
        """Give up a taken node's slot without polling it (its next slot is one interval on)."""
        self.done(key)


class Gate:
    """Back-pressure: pollers pass while ``room()`` says the uplink can take more.

    Args:
        room: True while the queue behind the pollers has room.
        recheck: seconds between checks while closed.
    """

    def __init__(self, room: Callable[[], bool] = lambda: True, recheck: float = 0.01) -> None:
        self.room = room
        self.recheck = recheck
        self._opened: asyncio.Event | None = None
        self._watcher: asyncio.Task[None] | None = None

    def open(self) -> bool:
        """Whether pollers may go on right now."""
        return self.room()

    async def wait(self) -> None:
        """Return once there is room; one shared watcher re-checks while the gate is closed."""
        if self.room():
            return
        if self._opened is None:
            self._opened = asyncio.Event()
            self._watcher = asyncio.get_running_loop().create_task(self._watch(self._opened))
        await self._opened.wait()

    async def _watch(self, opened: asyncio.Event) -> None:
        try:
            while not self.room():  # noqa: ASYNC110 - room() is a plain function: nothing to await
                await asyncio.sleep(self.recheck)
        finally:
            self._opened = None
            opened.set()
