"""Delivery: every poll into the durable outbox, out in data messages, deleted once the broker has it.

(``docs/architecture.md`` draws the path.) Nothing is acknowledged before it is on disk; a record
leaves the outbox only when the broker acknowledged (QoS 1) the message that carried it. Delivery
is at least once: ``(node, seq)`` lets a consumer drop a copy sent again.

Sessions. For each broker connection (:class:`~gateway.mqtt.uplink.Uplink`) the delivery layer counts a
new session in the outbox, builds the gateway birth (node table, schemas), a node birth per node and the
delivery counters, and marks the outbox's last id: what was stored before is the *backlog*, replayed
oldest first at ``drain_rate`` polls per second and flagged historical (the
compact header's flag; the SenML profile's MQTT 5 user property
``historical``). Polls stored during the session form the *live* lane: published
as they come (SenML) or gathered for ``batch_interval`` seconds (compact). Live
data always goes first: the backlog may use only half of the data window.

When the session ends, every record not acknowledged returns to the outbox and is replayed in
the next session; a node birth goes out again whenever a node's firmware changes, on a (signed)
``rebirth`` command, and when a consumer announces itself (:data:`gateway.mqtt.topics.HOST`).
The retained ``<root>/delivery`` message counts records the disk budget pushed out.

The rules are the pure state machine :class:`~gateway.delivery.machine.DeliveryMachine`; this
module does its I/O: the outbox (in its thread), the clock, the uplink, the encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cbor2

from gateway.contracts import Number, Register, ble_role
from gateway.delivery import birth
from gateway.delivery import machine_events as m
from gateway.delivery.machine import DeliveryMachine, Settings
from gateway.delivery.messages import Messages, known_roles
from gateway.delivery.outbox_thread import AsyncOutbox
from gateway.delivery.records import Kind, OutboxRecord, Storable
from gateway.delivery.senml_records import encode_poll, poll_raws, poll_seq
from gateway.mqtt.topics import Topics
from gateway.mqtt.uplink import Outgoing
from gateway.service.config import Config, NodeConfig
from gateway.service.stats import GatewayStats

log = logging.getLogger(__name__)


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
        d = config.delivery
        self.machine = DeliveryMachine(Settings(d.profile, d.batch_max, d.batch_interval, d.drain_rate))
        """The delivery rules; everything else here is I/O."""
        self._nodes(config)
        self._outbox: AsyncOutbox | None = None
        self._tempdir: str | None = None
        self._work = asyncio.Event()  # the writer has something to do
        self._kick = asyncio.Event()  # the composer may have something to do
        self._lock = asyncio.Lock()  # one writer at a time: held puts, takes and the session boundary agree
        self._send: Callable[[Outgoing], None] | None = None
        self._composer: asyncio.Task[None] | None = None
        self._dropped_by_kind = {Kind.READING: 0, Kind.EVENT: 0}  # as last read from the outbox
        self._duplicates = 0
        self._failure: BaseException | None = None

    def _nodes(self, config: Config) -> None:
        """The node table (the order compact messages index) from the configuration."""
        nodes = [(n.id, n.role) for n in config.node] + [(n.id, ble_role(n.role)) for n in config.ble.node]
        self.messages.nodes(nodes)
        self.machine.handle(m.NodesChanged(tuple(node_id for node_id, _ in nodes)))

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

        The gateway's back-pressure: the pollers hold back while this is high, so neither a slow disk nor a lagging
        broker makes the live lane spill into the backlog (or memory grow)."""
        return self.machine.waiting

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
        firmware = next((int(raw) for reg, raw in zip(known.registers, raws, strict=True)
                         if reg.name == "firmware"), None)
        record = OutboxRecord(node.id, seq, Kind.READING, when, payload)
        self._carry_out(self.machine.handle(m.Recorded(record, firmware)))
        self.stats.packs_queued += 1
        self._work.set()

    async def record_events(self, node: NodeConfig, events: Sequence[Storable], cursor: int | None) -> None:
        """Store a node's events (with its new event cursor; analytics flags have none) in one transaction."""
        outbox = self._outbox
        assert outbox is not None, "open() first"
        records = [OutboxRecord(node.id, e.seq, Kind.EVENT, e.time, e.payload()) for e in events]
        cursors = None if cursor is None else {node.id: cursor}
        async with self._lock:
            session = self.machine.holding_session
            if session is not None:
                entries = await outbox.put_held(records, cursors=cursors)
                self.machine.handle(m.Stored(tuple(entries), session, time.monotonic()))
                self._wake_writer()
            else:
                await outbox.put_many(records, cursors=cursors)
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
            actions = self.machine.handle(m.SessionOpening(session, await self._outbox.last_id()))
        msgs: list[Outgoing] = []
        for action in actions:
            if isinstance(action, m.SendBirths):
                msgs += self._births(action, session)
            elif isinstance(action, m.ReportStatus):
                msgs.append(await self._status())
        return msgs

    def session_open(self, session: int, send: Callable[[Outgoing], None]) -> None:
        """Births are out: start composing data messages into ``send``."""
        self._send = send
        self.machine.handle(m.SessionOpened(time.monotonic()))
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
        if self._composer is not None:
            self._composer.cancel()
            self._composer = None
        self.machine.handle(m.SessionClosed())
        self._wake_writer()

    def returned(self, unsent: list[Outgoing]) -> None:
        """Data messages that will not be acknowledged: their records go back to the outbox."""
        for msg in unsent:
            self.machine.handle(m.Returned(msg.entries))
        self._wake_writer()

    def acked(self, msg: Outgoing) -> None:
        """The broker has a data message: its records may leave the outbox."""
        self.machine.handle(m.Acked(msg.entries))
        self.stats.packs_acked += len(msg.entries)
        self.stats.readings_acked += msg.records
        self._work.set()
        self._kick.set()

    async def rebirth(self, node_ids: list[str]) -> None:
        """The ``rebirth`` command: :meth:`request_births`."""
        self.request_births(node_ids)

    def request_births(self, node_ids: Sequence[str] = (m.GATEWAY,)) -> None:  # default: a consumer announced itself
        """Births of these nodes again (all: the gateway's first); requests are merged until sent."""
        self.machine.handle(m.Rebirth(tuple(node_ids)))
        self._kick.set()

    def flush(self) -> None:
        """Compose every live poll now, whatever the batch interval (the gateway is stopping).

        The delivery counters go out once more, at once: drops since the last ``<root>/delivery`` (held back by
        its pause) must be reported before the uplink closes."""
        for action in self.machine.handle(m.Flush(time.monotonic())):
            if isinstance(action, m.ReportStatus):
                self._emit(self._status_message())
            else:
                self._carry_out([action])

    # -- the writer ----------------------------------------------------------------------------------------------

    async def _write(self) -> None:
        """Apply acks and returns, store pending polls (held while a session is open)."""
        outbox = self._outbox
        if outbox is None:
            return
        async with self._lock:
            for action in self.machine.handle(m.WriteDue()):
                if isinstance(action, m.Ack):
                    await outbox.ack(action.ids)
                elif isinstance(action, m.Release):
                    await outbox.release(action.ids)
                elif isinstance(action, m.Store) and action.held:
                    entries = await outbox.put_held(action.records)
                    self.machine.handle(m.Stored(tuple(entries), action.session, time.monotonic()))
                elif isinstance(action, m.Store):
                    await outbox.put_many(action.records)
            await self._count()
        self._wake_writer()
        self._kick.set()

    def _wake_writer(self) -> None:
        if self.machine.write_due:
            self._work.set()

    async def _count(self) -> None:
        assert self._outbox is not None
        dropped_before = self.stats.outbox_dropped
        self.stats.outbox_depth, self.stats.outbox_stored, self.stats.outbox_dropped = await self._outbox.counters()
        if self.stats.outbox_dropped != dropped_before:  # rare: read the detail the status message needs
            self._dropped_by_kind = await self._outbox.dropped()
            self._duplicates = await self._outbox.duplicates()
        self.machine.handle(m.Counted(self.stats.outbox_dropped))

    # -- the composer --------------------------------------------------------------------------------------------

    async def _compose(self) -> None:
        """While the session is open: births when due, live data, then backlog at the drain rate."""
        while self._send is not None and self.machine.is_open:
            self._kick.clear()
            for action in self.machine.handle(m.Tick(time.monotonic())):
                await self._carry_out_async(action)
            wait = self.machine.next_wake(time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), wait)

    async def _carry_out_async(self, action: m.Action) -> None:
        """One action of the composer; those that need the disk are awaited here."""
        if isinstance(action, m.Take):
            assert self._outbox is not None
            async with self._lock:  # after the writer's releases: an empty take ends the session's backlog
                entries = await self._outbox.take(action.limit, max_id=action.max_id)
                actions = self.machine.handle(m.Taken(tuple(entries), action.session))
            for then in actions:
                await self._carry_out_async(then)
            self._wake_writer()
        elif isinstance(action, m.ReportStatus):
            self._emit(await self._status())
        else:
            self._carry_out([action])

    def _carry_out(self, actions: list[m.Action]) -> None:
        """Actions that need no disk: publish, births, drop counts."""
        for action in actions:
            if isinstance(action, m.Publish):
                msgs, unreadable = self.messages.data(list(action.entries), events=action.lane is m.Lane.EVENTS,
                                                      historical=action.historical, profile=self.settings.profile)
                if unreadable:  # nothing here can read them (never expected): they leave the outbox unsent
                    self.machine.handle(m.Unreadable(tuple(unreadable)))
                for msg in msgs:
                    self._emit(msg, historical=action.historical)
            elif isinstance(action, m.SendBirths):
                for msg in self._births(action, self.messages.session):
                    self._emit(msg)
            elif isinstance(action, m.CountDrops):
                self.stats.outbox_dropped += action.count
        self._wake_writer()

    def _emit(self, msg: Outgoing, *, historical: bool = False) -> None:
        send = self._send
        if send is None:
            if msg.entries:
                self.machine.handle(m.Returned(msg.entries))
                self._wake_writer()
            return
        if msg.entries:
            self.machine.handle(m.Sent(msg.entries, historical))
        send(msg)

    # -- messages -----------------------------------------------------------------------------------------------

    def _births(self, action: m.SendBirths, session: int) -> list[Outgoing]:
        msgs = []
        if action.gateway:  # every node: the gateway birth again, seq 0
            msgs.append(self.messages.gateway_birth(session=session, ts=self.clock(), profile=self.settings.profile))
        for node_id, fw in action.nodes:
            if node_id in self.messages.index:
                msgs.append(self.messages.node_birth(node_id, firmware=fw, ts=self.clock()))
        return msgs

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
        self.machine.handle(m.StatusSent(time.monotonic()))
        return msg
