"""The delivery core as a state machine: events in, actions out, no I/O.

In the shape of h11: :meth:`DeliveryMachine.handle` takes one event (a poll
recorded, a write came back from the disk, a session opened or closed, a
message acknowledged or returned, time passed, the gateway stops) and returns
the actions the caller must carry out, in order (store these records, delete
those, release those, take backlog, publish these entries, send births, report
the counters, count a drop). It imports no asyncio, SQLite or MQTT; the async
driver (:class:`gateway.delivery.driver.Delivery`) does the I/O and feeds the
results back as events. All the rules of the data path live here:

1. Nothing is published before it is stored: a poll becomes an entry (with an
   outbox id) only through :class:`Store` and :class:`Stored`.
2. A record leaves the outbox only through :class:`Ack`, and only after the
   broker acknowledged the message carrying it (:class:`Acked`). Everything
   else that was handed out comes back with :class:`Release`: returned
   messages, live entries of a session that ended, entries stored or taken for
   a session that ended while the disk was busy (the session race, checked in
   one place: :meth:`DeliveryMachine._current`).
3. While a session is open, polls are stored *held* and form the live lane;
   what was stored before the session (ids up to ``boundary``) is the backlog,
   taken oldest first at ``drain_rate`` and never with more than half of the
   window of messages in flight.
4. Live polls held beyond ``live_max`` batches become backlog (the broker does
   not keep up); polls waiting for the disk beyond ``pending_max`` are dropped,
   oldest first, and counted (:class:`CountDrops`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from gateway.delivery.machine_events import (
    GATEWAY,
    Ack,
    Acked,
    Action,
    CountDrops,
    Counted,
    Event,
    Flush,
    Lane,
    NodesChanged,
    Publish,
    Rebirth,
    Recorded,
    Release,
    ReportStatus,
    Returned,
    SendBirths,
    Sent,
    SessionClosed,
    SessionOpened,
    SessionOpening,
    StatusSent,
    Store,
    Stored,
    Take,
    Taken,
    Tick,
    Unreadable,
    WriteDue,
)
from gateway.delivery.records import Entry, Kind, OutboxRecord

WINDOW = 48
"""Data messages handed to the uplink and not yet acknowledged, at most; the backlog gets half.

Enough to keep the uplink's own window (32 in flight) full with one message per poll (SenML), so that
acknowledgements, and their deletes in the outbox, come in batches."""
LIVE_MAX = 20
"""Live polls held in memory, in compact batches (``batch_max`` each), before the oldest go to the backlog."""
STATUS_PAUSE = 5.0
"""Seconds between two ``<root>/delivery`` messages (they go out when the counters changed)."""
PENDING_MAX = 100_000
"""Polls waiting for the disk, at most; beyond, the oldest are dropped (counted) so memory stays bounded."""
IDLE = 1.0
"""Seconds the composer sleeps when nothing is due (acknowledgements and new data wake it earlier)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``[delivery]`` settings the machine needs (:class:`gateway.service.config.DeliveryConfig`)."""

    profile: str
    batch_max: int
    batch_interval: float
    drain_rate: float
    window: int = WINDOW
    live_max: int = LIVE_MAX
    pending_max: int = PENDING_MAX
    status_pause: float = STATUS_PAUSE


@dataclass
class _Session:
    """What belongs to one broker session (and goes when it ends)."""

    number: int = 0
    holding: bool = False  # polls are stored held for the live lane (opening or open)
    open: bool = False  # births are out: data may be published
    boundary: int = 0  # backlog: ids up to here
    backlog: bool = False  # backlog left to replay
    live: deque[Entry] = field(default_factory=deque)  # readings stored and held, waiting for their message
    live_events: list[Entry] = field(default_factory=list)  # events never wait for a batch
    live_since: float = 0.0
    tokens: float = 0.0  # drain-rate bucket, in polls
    tokens_at: float = 0.0


class DeliveryMachine:
    """The delivery rules (see the module docstring) over plain data; feed it with :meth:`handle`.

    Args:
        settings: profile, batching and drain settings.
        nodes: configured node ids, in table order.
    """

    def __init__(self, settings: Settings, nodes: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.nodes: tuple[str, ...] = ()
        self.firmware: dict[str, int | None] = {}
        """Per configured node, the firmware version last polled (None: not yet, or no such register)."""
        self._born: dict[str, int | None] = {}
        self._pending: list[OutboxRecord] = []
        self._acks: list[int] = []
        self._releases: list[int] = []
        self._out: dict[tuple[int, ...], bool] = {}  # data messages with the uplink -> historical?
        self._s = _Session()
        self._ever = False  # a session has begun in this run
        self._flushing = False
        self._rebirth: set[str] = set()
        self._backlog_wait = IDLE
        self._dropped = 0
        self._reported: int | None = None
        self._status_at = -settings.status_pause
        self._table(nodes)

    # -- what the driver reads --------------------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Polls held in memory: not yet stored, or stored and waiting for their live message."""
        return len(self._pending) + len(self._s.live)

    @property
    def write_due(self) -> bool:
        """Acks, releases or polls wait for the writer."""
        return bool(self._acks or self._releases or self._pending)

    @property
    def is_open(self) -> bool:
        """A session is open: data may be published."""
        return self._s.open

    @property
    def holding_session(self) -> int | None:
        """The session new records are held for (stored with ``put_held``), or None: store them plainly."""
        return self._s.number if self._s.holding else None

    @property
    def in_flight(self) -> dict[tuple[int, ...], bool]:
        """Data messages with the uplink, by the ids they carry -> historical? (a copy)."""
        return dict(self._out)

    def next_wake(self, now: float) -> float:
        """Seconds until the composer has something to do, unless an event comes first."""
        wait = self._backlog_wait
        if self._s.live and self.settings.profile == "compact":
            due = self._s.live_since + self.settings.batch_interval - now
            wait = min(wait, max(due, 0.01))
        return wait

    # -- events -----------------------------------------------------------------------------------------------

    def handle(self, event: Event) -> list[Action]:
        """Apply one event; the actions to carry out, in order."""
        match event:
            case Recorded(record, firmware):
                return self._recorded(record, firmware)
            case WriteDue():
                return self._write()
            case Stored(entries, session, now):
                if self._current(entries, session):
                    self._add_live(entries, now)
                return []
            case SessionOpening(session, boundary):
                return self._opening(session, boundary)
            case SessionOpened(now):
                self._s.open = True
                self._s.tokens, self._s.tokens_at = 0.0, now
                return []
            case SessionClosed():
                s = self._s
                self._releases += [e.id for e in s.live] + [e.id for e in s.live_events]
                self._s = _Session(number=s.number)
                return []
            case Sent(ids, historical):
                self._out[ids] = historical
                return []
            case Acked(ids):
                self._out.pop(ids, None)
                self._acks += ids
                return []
            case Returned(ids):
                self._returned(ids)
                return []
            case Unreadable(ids):
                self._acks += ids
                return []
            case Taken(entries, session):
                return self._taken(entries, session)
            case Tick(now):
                return self._tick(now)
            case Flush(now):
                self._flushing = True
                if not self._s.open:
                    return []
                return [*self._compose_live(now), ReportStatus()]
            case Rebirth(nodes):
                self._rebirth.update(nodes)
                return []
            case NodesChanged(nodes):
                self._table(nodes)
                if self._ever:
                    self._rebirth = set(nodes) | {GATEWAY}
                return []
            case Counted(dropped):
                self._dropped = dropped
                return []
            case StatusSent(now):
                self._reported, self._status_at = self._dropped, now
                return []
        raise TypeError(f"not a delivery event: {event!r}")

    # -- rules ------------------------------------------------------------------------------------------------

    def _table(self, nodes: tuple[str, ...]) -> None:
        self.nodes = tuple(nodes)
        self.firmware = {n: self.firmware.get(n) for n in nodes}

    def _recorded(self, record: OutboxRecord, firmware: int | None) -> list[Action]:
        actions: list[Action] = []
        if len(self._pending) >= self.settings.pending_max:  # the disk stalls: keep memory bounded, newest first
            del self._pending[0]
            actions.append(CountDrops(1))
        self._pending.append(record)
        if firmware is not None and record.node in self.firmware:
            self.firmware[record.node] = firmware
        return actions

    def _write(self) -> list[Action]:
        actions: list[Action] = []
        if self._acks:
            actions.append(Ack(tuple(self._acks)))
            self._acks = []
        if self._releases:
            actions.append(Release(tuple(self._releases)))
            self._releases = []
        if self._pending:
            actions.append(Store(tuple(self._pending), self._s.holding, self._s.number))
            self._pending = []
        return actions

    def _current(self, entries: tuple[Entry, ...], session: int) -> bool:
        """Whether entries handed out for ``session`` may still go out; if not, they go back (the race)."""
        if self._s.holding and self._s.number == session:
            return True
        self._releases += [e.id for e in entries]
        return False

    def _add_live(self, entries: tuple[Entry, ...], now: float) -> None:
        s = self._s
        s.live_events += [e for e in entries if e.kind == Kind.EVENT]
        readings = [e for e in entries if e.kind != Kind.EVENT]
        if readings and not s.live:
            s.live_since = now
        s.live.extend(readings)
        excess = len(s.live) - self.settings.live_max * self.settings.batch_max
        if excess > 0:  # the broker does not keep up: the oldest live polls become backlog
            ids = [s.live.popleft().id for _ in range(excess)]
            self._to_backlog(ids)

    def _to_backlog(self, ids: list[int]) -> None:
        """Entries of this session that go back to the outbox, to be replayed in it as backlog."""
        self._releases += ids
        self._s.boundary = max(self._s.boundary, *ids)
        self._s.backlog = True

    def _opening(self, session: int, boundary: int) -> list[Action]:
        self._s = _Session(number=session, holding=True, boundary=boundary, backlog=True)
        self._ever = True
        self._rebirth.clear()
        self._born = dict(self.firmware)
        return [SendBirths(True, tuple(self.firmware.items())), ReportStatus()]

    def _returned(self, ids: tuple[int, ...]) -> None:
        self._out.pop(ids, None)
        if not ids:
            return
        if self._s.open:  # during a session: replay them in this session's backlog
            self._to_backlog(list(ids))
        else:
            self._releases += ids

    def _tick(self, now: float) -> list[Action]:
        if not self._s.open:
            return []
        actions: list[Action] = []
        if self._rebirth:
            actions.append(self._births())
        for node, fw in self.firmware.items():
            if fw is not None and self._born.get(node) != fw:
                self._born[node] = fw
                actions.append(SendBirths(False, ((node, fw),)))
        actions += self._compose_live(now)
        actions += self._backlog(now)
        if self._reported != self._dropped and now - self._status_at >= self.settings.status_pause:
            actions.append(ReportStatus())
        return actions

    def _births(self) -> SendBirths:
        wanted, self._rebirth = self._rebirth, set()
        everything = GATEWAY in wanted or wanted >= set(self.nodes)
        nodes = [n for n in self.nodes if n in wanted or GATEWAY in wanted]
        for n in nodes:
            self._born[n] = self.firmware.get(n)
        return SendBirths(everything, tuple((n, self.firmware.get(n)) for n in nodes))

    def _compose_live(self, now: float) -> list[Action]:
        s = self._s
        actions: list[Action] = []
        if s.live_events:
            actions.append(Publish(tuple(s.live_events), False, Lane.EVENTS))
            s.live_events = []
        room = self.settings.window - len(self._out)
        if self.settings.profile == "senml":
            while s.live and room > 0:
                actions.append(Publish((s.live.popleft(),), False, Lane.LIVE))
                room -= 1
            return actions
        batch = self.settings.batch_max
        due = now - s.live_since >= self.settings.batch_interval
        while s.live and room > 0 and (due or self._flushing or len(s.live) >= batch):
            entries = tuple(s.live.popleft() for _ in range(min(batch, len(s.live))))
            s.live_since = now
            actions.append(Publish(entries, False, Lane.LIVE))
            room -= 1
        return actions

    def _chunk(self) -> int:
        """Polls per backlog message: one SenML pack, or about a second's worth in one compact message."""
        if self.settings.profile == "senml":
            return 1
        return max(1, min(self.settings.batch_max, int(self.settings.drain_rate)))

    def _backlog(self, now: float) -> list[Action]:
        """A :class:`Take` if the window and the drain rate allow one now (else the wait until they may)."""
        s = self._s
        self._backlog_wait = IDLE
        if not s.backlog:
            return []
        rate, chunk = self.settings.drain_rate, self._chunk()
        s.tokens = min(s.tokens + (now - s.tokens_at) * rate, max(rate, float(chunk)))
        s.tokens_at = now
        window = self.settings.window
        backlog_out = sum(1 for historical in self._out.values() if historical)
        free = min(window // 2 - backlog_out, window - len(self._out))
        if free <= 0:
            return []  # acknowledgements wake the composer
        if s.tokens < chunk:
            self._backlog_wait = (chunk - s.tokens) / rate
            return []
        want = min(int(s.tokens), free) if self.settings.profile == "senml" else chunk
        return [Take(want, s.boundary, s.number)]

    def _taken(self, entries: tuple[Entry, ...], session: int) -> list[Action]:
        s = self._s
        self._backlog_wait = IDLE
        if not self._current(entries, session):  # the session ended while taking
            return []
        if not entries:
            s.backlog = bool(self._releases)  # returns still on their way back count as backlog
            return []
        s.tokens -= len(entries)
        self._backlog_wait = 0.0
        actions: list[Action] = []
        events = tuple(e for e in entries if e.kind == Kind.EVENT)
        if events:
            actions.append(Publish(events, True, Lane.EVENTS))
        polls = [e for e in entries if e.kind != Kind.EVENT]
        if self.settings.profile == "senml":
            actions += [Publish((e,), True, Lane.BACKLOG) for e in polls]
        elif polls:
            actions.append(Publish(tuple(polls), True, Lane.BACKLOG))
        return actions
