"""The live feed behind the page's server-sent events: one computation per tick, shared by every browser.

Every :data:`TICK` seconds the feed takes the street's view (:func:`gateway.dashboard.view.street_view`),
compares it with the previous one and hands every subscriber the same encoded message: ``update``
(what changed of each node that changed: its id, the fields that changed and, under ``values``, only
the values that changed; and the links, outbox and command counters) plus one ``event`` message per
thing that happened (an alarm raised or cleared, a node lost or back, a command's result, an
analytics flag: :mod:`gateway.dashboard.analytics`), and ``energy`` (the whole energy-saved table) when
a street's nightly report changes it. A new subscriber first gets ``state``: the whole view, the recent
events and the energy table. A subscriber that does not keep
up (:data:`BACKLOG` messages waiting) is dropped; its browser reconnects and starts again from
``state``, so a slow phone costs the gateway bounded memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from gateway.dashboard.view import street_view
from gateway.service.config import Config
from gateway.service.stats import GatewayStats

log = logging.getLogger(__name__)

TICK = 1.0
"""Seconds between two updates."""
BACKLOG = 20
"""Messages waiting for one subscriber after which it is dropped."""
EVENTS_KEPT = 200
"""Recent events a new subscriber is shown."""

Message = tuple[str, str]
"""An SSE message: (event name, JSON data)."""


class Feed:
    """The shared live state and its subscribers.

    Args:
        config: the gateway's configuration (node order, roles, buses).
        stats: the gateway's live state.
        queue_depth: messages waiting for the broker now.
        clock: wall clock.
    """

    def __init__(
        self, config: Config, stats: GatewayStats, queue_depth: Callable[[], int] = lambda: 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.stats = stats
        self.queue_depth = queue_depth
        self.clock = clock
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        """Recent events, newest last."""
        self.energy: list[dict[str, Any]] = []
        """Energy saved per street and night (:meth:`gateway.dashboard.analytics.AnalyticsPanel.energy`)."""
        self.view: dict[str, Any] = street_view(config, stats, 0, clock())
        self._subscribers: set[asyncio.Queue[Message | None]] = set()
        self._encode = msgspec.json.Encoder().encode
        self._nodes: dict[str, dict[str, Any]] = {}
        self._results_seen = stats.commands.total()
        self._changed = asyncio.Event()

    @property
    def subscribers(self) -> int:
        """Browsers connected now."""
        return len(self._subscribers)

    def subscribe(self) -> asyncio.Queue[Message | None]:
        """A queue of messages for one browser, starting with the whole state; None in it means: go away."""
        queue: asyncio.Queue[Message | None] = asyncio.Queue(BACKLOG)
        state = {**self.view, "events": list(self.events), "energy": self.energy}
        queue.put_nowait(("state", self._encode(state).decode()))
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Message | None]) -> None:
        """Forget a browser's queue."""
        self._subscribers.discard(queue)

    def close(self) -> None:
        """End every browser's stream (the gateway is stopping)."""
        for queue in list(self._subscribers):
            with contextlib.suppress(asyncio.QueueEmpty):
                queue.get_nowait()  # room for the end, whatever was waiting
            queue.put_nowait(None)
        self._subscribers.clear()

    def add_event(self, kind: str, **fields: Any) -> None:
        """Record an event and send it to every browser now."""
        event = {"kind": kind, "ts": self.clock(), **fields}
        self.events.append(event)
        self._send(("event", self._encode(event).decode()))

    def set_energy(self, rows: list[dict[str, Any]]) -> None:
        """A new energy-saved table: kept for new browsers, sent to every browser now."""
        self.energy = rows
        self._send(("energy", self._encode(rows).decode()))

    def poke(self) -> None:
        """Send an update before the next tick (after a command changed something)."""
        self._changed.set()

    async def run(self) -> None:
        """Update every :data:`TICK` seconds until cancelled."""
        while True:
            self.tick()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), TICK)
            self._changed.clear()

    def tick(self) -> None:
        """Take the view, note what happened since the last tick, send the changes."""
        view = street_view(self.config, self.stats, self.queue_depth(), self.clock())
        changed = []
        for node in view["nodes"]:
            before = self._nodes.get(node["id"])
            if before == node:
                continue
            changed.append(node if before is None else _delta(before, node))
            if before is not None:
                self._note(before, node)
            self._nodes[node["id"]] = node
        self._note_results()
        self.view = view
        if self._subscribers:
            update = {key: value for key, value in view.items() if key not in ("nodes", "units", "plotted")}
            update["nodes"] = changed
            self._send(("update", self._encode(update).decode()))

    def _note(self, before: dict[str, Any], after: dict[str, Any]) -> None:
        node = after["id"]
        for alarm in after["alarms"]:
            if alarm not in before["alarms"]:
                self.add_event("alarm", node=node, alarm=alarm, raised=True)
        for alarm in before["alarms"]:
            if alarm not in after["alarms"] and after["state"] not in ("offline", "unknown"):
                self.add_event("alarm", node=node, alarm=alarm, raised=False)
        if before["state"] != after["state"] and "offline" in (before["state"], after["state"]):
            self.add_event("link", node=node, online=after["state"] != "offline", error=after["error"])

    def _note_results(self) -> None:
        results = self.stats.recent_results
        total = self.stats.commands.total()
        new = total - self._results_seen
        if new <= 0:
            return
        self._results_seen = total
        for result in list(results)[-min(new, len(results)):]:
            self.add_event("result", id=result.get("id"), status=result.get("status"),
                           detail=result.get("detail", ""), reason=result.get("reason"))

    def _send(self, message: Message) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                log.info("dashboard: a browser fell %d messages behind; dropped (it reconnects)", BACKLOG)
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
                queue.put_nowait(None)


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What changed of one node: its id, the changed fields, the changed values (a poll moves a few)."""
    delta = {key: value for key, value in after.items() if key != "values" and before.get(key) != value}
    delta["id"] = after["id"]
    old = before["values"]
    values = {name: value for name, value in after["values"].items() if old.get(name) != value}
    if values:
        delta["values"] = values
    return delta
