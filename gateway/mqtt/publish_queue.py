"""The uplink's outgoing messages and the bounded queue they wait in before the broker takes them.

Data messages (they carry outbox ids) are durable elsewhere: pushed out of a full queue, they go back to
their source. Everything else (command results, node states, audit lines) lives only here, so a full lane
drops its oldest message and says so through ``on_drop``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["QUEUE_SIZE", "Outgoing", "PublishQueue"]

QUEUE_SIZE = 10_000
"""Default capacity of the publish queue, in messages (one per poll of a node)."""


@dataclass(frozen=True)
class Outgoing:
    """One message for the broker.

    ``records`` counts the readings of a data message; ``entries`` are the outbox ids it carries (a
    data message from the data source); ``properties`` are MQTT 5 user properties.
    """

    topic: str
    payload: bytes
    retain: bool = False
    records: int = 0
    urgent: bool = False
    entries: tuple[int, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()


class PublishQueue:
    """A bounded FIFO of outgoing messages that drops the oldest when full.

    Urgent messages (command results) have their own lane that is always served
    first and is never pushed out by telemetry.

    Args:
        maxsize: capacity of each lane.
        on_drop: called once per dropped message.
    """

    def __init__(self, maxsize: int = QUEUE_SIZE, on_drop: Callable[[Outgoing], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._urgent: deque[Outgoing] = deque()
        self._routine: deque[Outgoing] = deque()
        self._on_drop = on_drop
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._urgent) + len(self._routine)

    def put(self, msg: Outgoing) -> None:
        """Queue a message at the back of its lane, dropping that lane's oldest when full."""
        lane = self._urgent if msg.urgent else self._routine
        if len(lane) >= self.maxsize:
            dropped = lane.popleft()
            if self._on_drop is not None:
                self._on_drop(dropped)
        lane.append(msg)
        self._ready.set()

    def put_back(self, msg: Outgoing) -> None:
        """Return an unacknowledged message to the front, to be sent first after reconnecting."""
        lane = self._urgent if msg.urgent else self._routine
        if len(lane) >= self.maxsize:
            if self._on_drop is not None:
                self._on_drop(msg)
            return
        lane.appendleft(msg)
        self._ready.set()

    def take_data(self) -> list[Outgoing]:
        """Remove and return every data message (one carrying outbox entries), in queue order."""
        data = [m for m in self._routine if m.entries]
        if data:
            self._routine = deque(m for m in self._routine if not m.entries)
        return data

    def close(self) -> None:
        """No more waiting: :meth:`get` returns None once the queue is empty."""
        self._closed = True
        self._ready.set()

    async def get(self) -> Outgoing | None:
        """The next message (urgent lane first); None when closed and empty."""
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if self._routine:
                return self._routine.popleft()
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
