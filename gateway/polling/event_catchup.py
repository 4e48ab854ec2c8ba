"""Node event logs: after a restart or an outage, read what happened on a node since the last event stored.

The contract is the node's (``protocols/roles/common.py``): each event is
``(seq, time, code, value)``; the node keeps the last ones in a ring; the
master writes ``event_from`` = the first seq it wants and reads the event
window (input registers from ``EVENT_WINDOW_START``, ``event_count`` events of
``EVENT_WORDS`` words), repeating while a full window came back. Every poll
reports ``event_next`` (the seq the next event will get): when it is beyond the
node's cursor (the last seq stored, kept in the outbox), the reader catches up.

Events are stored in the outbox with the cursor, in one transaction: a cursor
never runs ahead of what is on disk, so a crash between the read and the store
costs a re-read, never an event. Events the ring overwrote before they were
read are counted by the node itself (``event_lost``, in every poll) and logged
here.

Times: ``time`` is epoch seconds, or the node's uptime in seconds when the
event happened before its clock was set (below ``CLOCK_MIN``). Such a time is
turned into epoch seconds with the uptime and time of the poll that triggered
the read, and the event is flagged ``estimated``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

import cbor2

from gateway.contracts import (
    INPUT,
    RO,
    S32,
    U16,
    U32,
    Number,
    Register,
    RegisterMap,
    load_role,
    register_map,
    role_constants,
)
from gateway.contracts import common as _common
from gateway.service.cancelling import cancel_and_wait
from gateway.service.config import NodeConfig
from gateway.transport.bus import Bus, BusError
from gateway.transport.priority_lock import ROUTINE

log = logging.getLogger(__name__)

WINDOW = int(_common.EVENT_WINDOW)
"""Events in one window read."""
CLOCK_MIN = int(_common.CLOCK_MIN)
"""Event times below this are seconds of uptime, not epoch seconds."""
RETRY_AFTER = 30.0
"""Seconds before a node whose event log could not be read is tried again."""


class Event(NamedTuple):
    """One node event; ``time`` is epoch seconds (``estimated`` if derived from the node's uptime)."""

    seq: int
    time: float
    code: int
    value: int
    estimated: bool = False

    def payload(self) -> bytes:
        """What the outbox keeps of an event: CBOR ``[time, code, value, estimated]``."""
        return cbor2.dumps([self.time, self.code, self.value, self.estimated])

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> Event:
        """The event an outbox payload holds."""
        time, code, value, estimated = cbor2.loads(payload)
        return cls(seq, time, code, value, bool(estimated))


def _window_map() -> RegisterMap:
    """``event_count`` and the window slots as a register map, so that the bus reads them in one block."""
    start = int(_common.EVENT_WINDOW_START)
    words = int(_common.EVENT_WORDS)
    count_reg = next(r for r in _common.COMMON if r[0] == "event_count")
    rows = [count_reg]
    for i in range(WINDOW):
        at = start + i * words  # seq u32, time u32, code u16, value s32, high words first
        rows += [
            (f"ev{i}_seq", INPUT, at, U32, 0, None, RO, 0, 0xFFFFFFFF, "event seq"),
            (f"ev{i}_time", INPUT, at + 2, U32, 0, "s", RO, 0, 0xFFFFFFFF, "event time"),
            (f"ev{i}_code", INPUT, at + 4, U16, 0, None, RO, 0, 0xFFFF, "event code"),
            (f"ev{i}_value", INPUT, at + 5, S32, 0, None, RO, -0x80000000, 0x7FFFFFFF, "value"),
        ]
    return register_map("event_window", rows)


WINDOW_MAP = _window_map()
"""The event window (and its count) as one readable block of input registers."""


def event_names(role: str) -> dict[int, str]:
    """Event code -> name, from the ``EV_*`` constants of the common and the role module (``EV_LEVEL``: ``level``)."""
    names: dict[int, str] = {}
    for constants in (role_constants("common"), role_constants(role)):
        for attr, value in constants.items():
            if attr.startswith("EV_") and attr != "EV_ROLE":
                names.setdefault(value, attr[3:].lower())
    return names


def parse_window(readings: list[tuple[Register, Number]]) -> list[tuple[int, int, int, int]]:
    """``(seq, time, code, value)`` of the events in a window read, in seq order."""
    values = {reg.name: int(raw) for reg, raw in readings}
    count = min(values.get("event_count", 0), WINDOW)
    return [(values[f"ev{i}_seq"], values[f"ev{i}_time"], values[f"ev{i}_code"], values[f"ev{i}_value"])
            for i in range(count)]


Store = Callable[[NodeConfig, list[Event], int], Awaitable[None]]
"""Stores a node's events durably with its new cursor (the last seq), in one transaction."""


class EventReader:
    """Catches up on the event logs of nodes whose polls show events it has not stored.

    Args:
        buses: bus adapters by name (shared with the pollers; updated in place on reload).
        store: durable store for events and cursor (:meth:`gateway.delivery.driver.Delivery.record_events`).
        cursors: the last event seq stored, per node id (loaded from the outbox).
    """

    def __init__(self, buses: Mapping[str, Bus], store: Store, cursors: Mapping[str, int]) -> None:
        self.buses = buses
        self.store = store
        self.cursors = dict(cursors)
        self.lost = 0
        """Events the nodes' rings overwrote before they were read (as seen from here)."""
        self._running: dict[str, asyncio.Task[None]] = {}
        self._retry_at: dict[str, float] = {}  # after a failed read, not before (monotonic)

    def check(self, node: NodeConfig, when: float, readings: list[tuple[Register, Number]]) -> None:
        """After a good poll: start a catch-up if the node has events this gateway has not stored."""
        values = {reg.name: raw for reg, raw in readings}
        if "event_next" not in values:
            return  # a node without an event log
        cursor = self.cursors.get(node.id)
        if int(values["event_next"]) <= (0 if cursor is None else cursor + 1):
            return  # nothing new (an empty log, or everything stored)
        if node.id in self._running or time.monotonic() < self._retry_at.get(node.id, 0.0):
            return  # the next poll looks again
        task = asyncio.get_running_loop().create_task(self._catch_up(node, when, values), name=f"events-{node.id}")
        self._running[node.id] = task
        task.add_done_callback(lambda _t: self._running.pop(node.id, None))

    async def close(self) -> None:
        """Cancel catch-ups in progress (their events are read again at the next start)."""
        await cancel_and_wait(list(self._running.values()))

    async def _catch_up(self, node: NodeConfig, when: float, values: dict[str, Number]) -> None:
        bus = self.buses.get(node.bus)
        if bus is None:
            return
        regmap = load_role(node.role)
        event_from = regmap["event_from"]
        names_of = None
        cursor = self.cursors.get(node.id)
        start = 0 if cursor is None else cursor + 1
        oldest = int(values.get("event_oldest", 0))
        if cursor is not None and oldest > start:
            self.lost += oldest - start
            log.warning("node %s: events %d..%d were overwritten before they were read", node.id, start, oldest - 1)
        try:
            while True:
                await bus.write(node.unit, event_from.address, event_from.words(start), priority=ROUTINE)
                first, words = await bus.read_table(node.unit, WINDOW_MAP, INPUT, priority=ROUTINE)
                window = [e for e in parse_window(WINDOW_MAP.decode(INPUT, first, words)) if e[0] >= start]
                if not window:
                    break
                events = [self._event(e, when, values) for e in window]
                await self.store(node, events, events[-1].seq)
                self.cursors[node.id] = events[-1].seq
                if names_of is None and log.isEnabledFor(logging.INFO):
                    names_of = event_names(node.role)
                    log.info("node %s: %d event(s) read from seq %d (%s ...)", node.id, len(events), start,
                             names_of.get(events[0].code, events[0].code))
                start = events[-1].seq + 1
                if len(window) < WINDOW or start >= int(values["event_next"]):
                    break
        except BusError as exc:  # a poll that shows new events tries again, after a pause
            self._retry_at[node.id] = time.monotonic() + RETRY_AFTER
            log.warning("node %s: event log read failed (again in %.0f s): %s", node.id, RETRY_AFTER, exc)

    @staticmethod
    def _event(raw: tuple[int, int, int, int], when: float, values: dict[str, Number]) -> Event:
        seq, time, code, value = raw
        if time >= CLOCK_MIN:
            return Event(seq, float(time), code, value)
        uptime = int(values.get("uptime", 0))
        if time <= uptime:  # this boot, before the clock was set: from the poll's time and uptime
            return Event(seq, when - (uptime - time), code, value, estimated=True)
        return Event(seq, when, code, value, estimated=True)  # an earlier boot without a clock: unknown
