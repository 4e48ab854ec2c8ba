"""Delivery: every poll into the durable outbox, out in data messages, deleted once the broker has it.

::

    poller --record()--> pending --writer--> outbox (SQLite, WAL)
                                               |  live lane: stored and held at once while connected
                                               |  backlog lane: what was stored before this session
                                               v
                         composer --> births, data messages --> Uplink --PUBACK--> acked() --> outbox.ack

Nothing is acknowledged to anyone before it is on disk, and a record leaves the
outbox only when the broker acknowledged the message that carried it (QoS 1).
Delivery is at least once: a message whose acknowledgement was lost is sent
again, and ``(node, seq)`` lets a consumer drop the copy.

Sessions. For each broker connection (:class:`~gateway.mqtt.uplink.Uplink`) the
delivery layer counts a new session in the outbox, builds the gateway birth
(node table, schemas), a node birth per node and the delivery counters, and
marks the outbox's last id: what was stored before is the *backlog*, replayed
oldest first at ``drain_rate`` polls per second and flagged historical (the
compact header's flag; the SenML profile's MQTT 5 user property
``historical``). Polls stored during the session form the *live* lane: published
as they come (SenML) or gathered for ``batch_interval`` seconds (compact). Live
data always goes first: the backlog may use only half of the data window.

When the session ends, every record not acknowledged returns to the outbox and
is replayed in the next session; a node birth goes out again whenever a node's
firmware version changes, and on a (signed) ``rebirth`` command.
Records the disk budget pushed out are counted in the retained
``<root>/delivery`` message, so the loss is reported upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import cbor2

from gateway.contracts import Number, Register
from gateway.delivery import birth
from gateway.delivery.messages import Messages, known_roles
from gateway.delivery.outbox import Entry, Kind, OutboxRecord
from gateway.delivery.outbox_thread import AsyncOutbox
from gateway.delivery.senml_records import encode_poll, poll_raws, poll_seq
from gateway.mqtt.topics import Topics
from gateway.mqtt.uplink import Outgoing
from gateway.polling.event_catchup import Event
from gateway.service.config import Config, NodeConfig
from gateway.service.stats import GatewayStats

log = logging.getLogger(__name__)

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


class Delivery:
    """The durable data path between the pollers and the uplink (the uplink's data source).

    Args:
        config: the gateway configuration (``[delivery]``, nodes, site).
        topics: the gateway's topic names.
        stats: counters to update.
        clock: wall clock (epoch seconds) for timestamps.
    """

    def __init__(
        self, config: Config, topics: Topics, stats: GatewayStats, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config
        self.settings = config.delivery
        self.topics = topics
        self.stats = stats
        self.clock = clock
        self._by_role = known_roles()
        self.messages = Messages(topics, config.site, config.gateway, self._by_role)
        self._firmware: dict[str, int | None] = {}
        self._nodes(config)
        self._born: dict[str, int | None] = {}
        self._outbox: AsyncOutbox | None = None
        self._tempdir: str | None = None
        self._pending: list[OutboxRecord] = []
        self._acks: list[int] = []
        self._releases: list[int] = []
        self._live: deque[Entry] = deque()  # readings stored and held, waiting for their message
        self._live_events: list[Entry] = []  # events stored and held: they never wait for a batch
        self._live_since = 0.0
        self._work = asyncio.Event()
        self._kick = asyncio.Event()
        self._lock = asyncio.Lock()
        self._holding = False  # puts are held for the live lane (a session is opening or open)
        self._send: Callable[[Outgoing], None] | None = None
        self._composer: asyncio.Task[None] | None = None
        self._session = 0
        self._boundary = 0
        self._backlog = False  # backlog left to replay in this session
        self._out: dict[Outgoing, bool] = {}  # data messages with the uplink -> historical?
        self._tokens = 0.0
        self._tokens_at = 0.0
        self._flushing = False
        self._rebirth: set[str] = set()  # node ids whose births were asked for again
        self._status_at = -STATUS_PAUSE
        self._reported: int | None = None
        self._dropped_by_kind = {Kind.READING: 0, Kind.EVENT: 0}  # as last read from the outbox
        self._duplicates = 0
        self._failure: BaseException | None = None

    def _nodes(self, config: Config) -> None:
        """The node table (the order compact messages index) from the configuration."""
        self.messages.nodes([(n.id, n.role) for n in config.node])
        self._firmware = {n.id: self._firmware.get(n.id) for n in config.node}

    def reconfigure(self, config: Config) -> None:
        """Nodes were added, removed or changed (a reload): new node table, every birth again.

        Messages composed before keep citing the birth they were made for; consumers keep births by id.
        """
        self.config = config
        # A profile file the new configuration names is a role now (or its content changed): learn its schema.
        fresh = {role: known for role, known in known_roles().items()
                 if role not in self._by_role or self._by_role[role].schema.id != known.schema.id}
        if fresh:
            self._by_role.update(fresh)
            self.messages.learn(fresh)
        self._nodes(config)
        if self._session:
            self._rebirth = set(self.messages.index) | {""}  # "": the gateway birth too, with the new table
            self._kick.set()

    # -- lifecycle ---------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Open (or create) the outbox; what it holds from an earlier run is replayed as backlog."""
        path = self.settings.outbox
        if not path:
            self._tempdir = tempfile.mkdtemp(prefix="streetedge-outbox-")
            path = str(Path(self._tempdir) / "outbox.db")
            log.warning("no [delivery] outbox file configured: records are kept in %s only until the gateway stops",
                        path)
        budget = int(self.settings.budget_mb * 1024 * 1024)
        # A temporary outbox is gone at stop anyway: fsyncing it would only cost.
        sync = self.settings.synchronous if self.settings.outbox else "NORMAL"
        self._outbox = await AsyncOutbox.open(path, budget_bytes=budget, synchronous=sync)
        # The outbox keeps what each schema id means, so records stored by an older gateway, under a register map
        # that has changed since, can still be published (as SenML, from the stored description).
        mine = {k.schema.id: birth.encode_schema(k.schema) for k in self._by_role.values()}
        await self._outbox.remember_schemas(mine)
        self.messages.described = {k: cbor2.loads(v) for k, v in (await self._outbox.schemas()).items()}
        await self._count()
        depth = self.stats.outbox_depth
        if depth:
            log.info("outbox %s holds %d records from before: they go out as backlog", path, depth)

    async def run(self) -> None:
        """Write polls, acks and returns to the outbox as they come, until cancelled."""
        while True:
            await self._work.wait()
            self._work.clear()
            if self._failure is not None:  # the composer died: end the gateway loudly, not silently
                raise self._failure
            await self._write()

    async def settle(self) -> None:
        """Store what is waiting for the disk now (a stopping gateway calls this before the uplink drains)."""
        await self._write()

    async def close(self) -> None:
        """Store what is pending, return what is held, close the outbox (and remove a temporary one)."""
        self.session_closed()
        if self._outbox is not None:
            await self._write()
            await self._outbox.close()
            self._outbox = None
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None

    @property
    def waiting(self) -> int:
        """Polls held in memory: recorded and not yet stored, or stored and waiting for their live message.

        The gateway's back-pressure: the pollers hold back while this is high, so neither a slow disk nor a
        broker that does not keep up makes the live lane spill into the backlog (or memory grow).
        """
        return len(self._pending) + len(self._live)

    # -- from the pollers --------------------------------------------------------------------------------------

    def record(self, node: NodeConfig, when: float, readings: list[tuple[Register, Number]]) -> None:
        """A good poll of ``node`` at ``when`` (epoch s): queue it for the outbox; returns at once."""
        known = self._by_role.get(node.role)
        if known is None:
            return
        raws = poll_raws(known.registers, readings)
        time_ms = round(when * 1000)
        seq = poll_seq(known.registers, raws, time_ms)
        payload = encode_poll(known.schema.id, time_ms, raws)
        if len(self._pending) >= PENDING_MAX:  # the disk stalls: keep memory bounded, newest first
            del self._pending[0]
            self.stats.outbox_dropped += 1
        self._pending.append(OutboxRecord(node.id, seq, Kind.READING, when, payload))
        self.stats.packs_queued += 1
        if node.id in self._firmware:
            for reg, raw in zip(known.registers, raws, strict=True):
                if reg.name == "firmware":
                    self._firmware[node.id] = int(raw)
        self._work.set()

    async def record_events(self, node: NodeConfig, events: list[Event], cursor: int) -> None:
        """Store a node's events with its new event cursor, in one transaction; they go out at once."""
        outbox = self._outbox
        assert outbox is not None, "open() first"
        records = [OutboxRecord(node.id, e.seq, Kind.EVENT, e.time, e.payload()) for e in events]
        async with self._lock:
            if self._holding:
                session = self._session
                entries = await outbox.put_held(records, cursors={node.id: cursor})
                if self._holding and self._session == session:
                    self._add_live(entries)
                else:
                    self._releases += [e.id for e in entries]
                    self._work.set()
            else:
                await outbox.put_many(records, cursors={node.id: cursor})
            await self._count()
        self._kick.set()

    async def cursors(self) -> dict[str, int]:
        """Per node, the last event seq stored (the event log readers start after it)."""
        assert self._outbox is not None, "open() first"
        return await self._outbox.cursors()

    # -- the data source of the uplink --------------------------------------------------------------------------

    async def new_session(self) -> int:
        """Count a new session in the outbox (it never repeats, also across restarts)."""
        assert self._outbox is not None, "open() first"
        return await self._outbox.next_session()

    async def births(self, session: int) -> list[Outgoing]:
        """Gateway birth, node births and counters for a new session; from now on puts are held (live)."""
        assert self._outbox is not None, "open() first"
        async with self._lock:
            self._session = session
            self._holding = True
            self._boundary = await self._outbox.last_id()
            self._backlog = True
        msgs = [self.messages.gateway_birth(session=session, ts=self.clock(), profile=self.settings.profile)]
        msgs += [self._node_birth(node_id) for node_id in self.messages.index]
        msgs.append(await self._status())
        self._rebirth.clear()
        return msgs

    def session_open(self, session: int, send: Callable[[Outgoing], None]) -> None:
        """Births are out: start composing data messages into ``send``."""
        self._send = send
        self._tokens, self._tokens_at = 0.0, time.monotonic()
        self._composer = asyncio.create_task(self._compose(), name="delivery-compose")
        self._composer.add_done_callback(self._composer_done)

    def _composer_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the data composer failed", exc_info=task.exception())
            self._failure = task.exception()
            self._work.set()

    def session_closed(self) -> None:
        """The connection is gone: stop composing; held live entries go back to the outbox."""
        self._send = None
        self._holding = False
        if self._composer is not None:
            self._composer.cancel()
            self._composer = None
        if self._live or self._live_events:
            self._releases += [e.id for e in self._live] + [e.id for e in self._live_events]
            self._live.clear()
            self._live_events.clear()
            self._work.set()

    def returned(self, unsent: list[Outgoing]) -> None:
        """Data messages that will not be acknowledged: their records go back to the outbox."""
        ids: list[int] = []
        for msg in unsent:
            self._out.pop(msg, None)
            ids += msg.entries
        if ids:
            self._releases += ids
            if self._send is not None:  # during a session: replay them in this session's backlog
                self._boundary = max(self._boundary, *ids)
                self._backlog = True
            self._work.set()

    def acked(self, msg: Outgoing) -> None:
        """The broker has a data message: its records may leave the outbox."""
        self._out.pop(msg, None)
        self._acks += msg.entries
        self.stats.packs_acked += len(msg.entries)
        self.stats.readings_acked += msg.records
        self._work.set()
        self._kick.set()

    async def rebirth(self, node_ids: list[str]) -> None:
        """The ``rebirth`` command: births of these nodes again; all of them: the gateway birth first."""
        self._rebirth.update(node_ids)
        self._kick.set()

    def flush(self) -> None:
        """Compose every live poll now, whatever the batch interval (the gateway is stopping).

        The delivery counters go out once more, at once: drops since the last ``<root>/delivery`` (held
        back by its pause) must be reported before the uplink closes.
        """
        self._flushing = True
        if self._send is not None:
            self._compose_live(time.monotonic())
            self._emit(self._status_message())

    # -- the writer ----------------------------------------------------------------------------------------------

    async def _write(self) -> None:
        """Apply acks and returns, store pending polls (held while a session is open)."""
        outbox = self._outbox
        if outbox is None:
            return
        async with self._lock:
            if self._acks:
                ids, self._acks = self._acks, []
                await outbox.ack(ids)
            if self._releases:
                ids, self._releases = self._releases, []
                await outbox.release(ids)
            if self._pending:
                batch, self._pending = self._pending, []
                if self._holding:
                    session = self._session
                    entries = await outbox.put_held(batch)
                    if self._holding and self._session == session:
                        self._add_live(entries)
                    else:  # the session ended while the disk was busy
                        self._releases += [e.id for e in entries]
                        self._work.set()
                else:
                    await outbox.put_many(batch)
            await self._count()
        self._kick.set()

    def _add_live(self, entries: list[Entry]) -> None:
        events = [e for e in entries if e.kind == Kind.EVENT]
        if events:
            self._live_events += events
            entries = [e for e in entries if e.kind != Kind.EVENT]
        if entries and not self._live:
            self._live_since = time.monotonic()
        self._live.extend(entries)
        excess = len(self._live) - LIVE_MAX * self.settings.batch_max
        if excess > 0:  # the broker does not keep up: the oldest live polls become backlog
            ids = [self._live.popleft().id for _ in range(excess)]
            self._releases += ids
            self._boundary = max(self._boundary, *ids)
            self._backlog = True
            self._work.set()

    async def _count(self) -> None:
        assert self._outbox is not None
        dropped_before = self.stats.outbox_dropped
        self.stats.outbox_depth, self.stats.outbox_stored, self.stats.outbox_dropped = await self._outbox.counters()
        if self.stats.outbox_dropped != dropped_before:  # rare: read the detail the status message needs
            self._dropped_by_kind = await self._outbox.dropped()
            self._duplicates = await self._outbox.duplicates()

    # -- the composer --------------------------------------------------------------------------------------------

    async def _compose(self) -> None:
        """While the session is open: births when due, live data, then backlog at the drain rate."""
        while self._send is not None:
            self._kick.clear()
            now = time.monotonic()
            if self._rebirth:
                self._send_births()
            for node_id, fw in list(self._firmware.items()):
                if fw is not None and self._born.get(node_id) != fw:
                    self._emit(self._node_birth(node_id))
            self._compose_live(now)
            wait = await self._compose_backlog(now)
            if self._reported != self._dropped_key() and now - self._status_at >= STATUS_PAUSE:
                self._emit(await self._status())
            if self._live and self.settings.profile == "compact":
                due = self._live_since + self.settings.batch_interval - time.monotonic()
                wait = min(wait, max(due, 0.01))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), wait)

    def _compose_live(self, now: float) -> None:
        if self._live_events:  # events never wait for a batch
            events, self._live_events = self._live_events, []
            for msg in self.messages.events(events, historical=False):
                self._emit(msg)
        room = WINDOW - len(self._out)
        if self.settings.profile == "senml":
            while self._live and room > 0:
                self._emit(self._senml(self._live.popleft(), historical=False))
                room -= 1
            return
        batch = self.settings.batch_max
        due = now - self._live_since >= self.settings.batch_interval
        while self._live and room > 0 and (due or self._flushing or len(self._live) >= batch):
            entries = [self._live.popleft() for _ in range(min(batch, len(self._live)))]
            self._live_since = now
            for msg in self._compact(entries, historical=False):
                self._emit(msg)
            room -= 1

    async def _compose_backlog(self, now: float) -> float:
        """Replay one backlog message if the window and the drain rate allow; seconds until it may go on."""
        if not self._backlog or self._outbox is None:
            return 1.0
        rate = self.settings.drain_rate
        senml = self.settings.profile == "senml"
        # polls per backlog message: one SenML pack, or about a second's worth in one compact message
        chunk = 1 if senml else max(1, min(self.settings.batch_max, int(rate)))
        self._tokens = min(self._tokens + (now - self._tokens_at) * rate, max(rate, float(chunk)))
        self._tokens_at = now
        backlog_out = sum(1 for historical in self._out.values() if historical)
        free = min(WINDOW // 2 - backlog_out, WINDOW - len(self._out))
        if free <= 0:
            return 1.0  # acknowledgements kick us
        if self._tokens < chunk:
            return (chunk - self._tokens) / rate
        want = min(int(self._tokens), free) if senml else chunk
        entries = await self._outbox.take(want, max_id=self._boundary)
        if self._send is None:  # the session ended while taking
            self._releases += [e.id for e in entries]
            self._work.set()
            return 1.0
        if not entries:
            self._backlog = bool(self._releases)  # returns still on their way back count as backlog
            return 1.0
        self._tokens -= len(entries)
        for msg in self.messages.events([e for e in entries if e.kind == Kind.EVENT], historical=True):
            self._emit(msg, historical=True)
        entries = [e for e in entries if e.kind != Kind.EVENT]
        if senml:
            for entry in entries:
                self._emit(self._senml(entry, historical=True), historical=True)
        else:
            for msg in self._compact(entries, historical=True):
                self._emit(msg, historical=True)
        return 0.0

    def _emit(self, msg: Outgoing | None, *, historical: bool = False) -> None:
        if msg is None:
            return
        send = self._send
        if send is None:
            if msg.entries:
                self._releases += msg.entries
                self._work.set()
            return
        if msg.entries:
            self._out[msg] = historical
        send(msg)

    # -- messages -----------------------------------------------------------------------------------------------

    def _send_births(self) -> None:
        wanted, self._rebirth = self._rebirth, set()
        if "" in wanted or wanted >= set(self.messages.index):  # every node: the gateway birth again, seq 0
            self._emit(self.messages.gateway_birth(session=self._session, ts=self.clock(),
                                                   profile=self.settings.profile))
        for node_id in self.messages.index:
            if node_id in wanted or "" in wanted:
                self._emit(self._node_birth(node_id))

    def _node_birth(self, node_id: str) -> Outgoing:
        fw = self._firmware.get(node_id)
        self._born[node_id] = fw
        return self.messages.node_birth(node_id, firmware=fw, ts=self.clock())

    def _dropped_key(self) -> int:
        return self.stats.outbox_dropped

    async def _status(self) -> Outgoing:
        """The retained delivery counters, read from the outbox now."""
        assert self._outbox is not None
        self._dropped_by_kind = await self._outbox.dropped()
        self._duplicates = await self._outbox.duplicates()
        await self._count()
        return self._status_message()

    def _status_message(self) -> Outgoing:
        """The retained delivery counters as last read: stored, dropped (by kind), duplicates, backlog depth."""
        dropped = self._dropped_by_kind
        msg = self.messages.status(
            stored=self.stats.outbox_stored,
            dropped={"readings": dropped[Kind.READING], "events": dropped[Kind.EVENT]},
            duplicates=self._duplicates, depth=self.stats.outbox_depth, ts=self.clock(),
        )
        self._reported = self._dropped_key()
        self._status_at = time.monotonic()
        return msg

    def _senml(self, entry: Entry, *, historical: bool) -> Outgoing | None:
        """The SenML message of one poll; None (and the record acked away) if nothing here can read it."""
        msg = self.messages.senml(entry, historical=historical)
        if msg is None:
            self._acks.append(entry.id)
            self._work.set()
        return msg

    def _compact(self, entries: list[Entry], *, historical: bool) -> list[Outgoing]:
        """One compact message for the entries this birth can index; SenML for any it cannot."""
        msgs, others = self.messages.compact(entries, historical=historical)
        for entry in others:
            other = self._senml(entry, historical=historical)
            if other is not None:
                msgs.append(other)
        return msgs
