"""The delivery machine on its own: every interleaving of polls, writes, sessions, acks, refusals,
disconnects, restarts and budget drops, against a model of the outbox.

The model outbox keeps what SQLite keeps (rows, ids never reused, the session counter) and, in memory,
what the real one keeps in memory (entries in flight); a restart loses the machine and the in-flight
marks, never a row. Messages are composed by the real :class:`~gateway.delivery.messages.Messages`, so
``seq`` is read from what a consumer would see. Checked after every step:

- nothing stored is lost: every stored record is still in the outbox, acknowledged by the broker, or
  counted as dropped by the budget;
- nothing acknowledged is resent, except what the at-least-once contract allows: a record whose
  acknowledgement reached the machine but not the disk before a restart;
- nothing goes out that is not stored and in flight, and no record is in two unacknowledged messages;
- ``seq`` never repeats within a session (between a gateway birth and the next one);
- at the end, connected to a broker that acknowledges everything, the outbox drains to empty.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import cbor2
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from gateway.delivery import compact
from gateway.delivery import machine_events as ev
from gateway.delivery.machine import DeliveryMachine, Settings
from gateway.delivery.messages import Messages, known_roles
from gateway.delivery.records import Entry, Kind, OutboxRecord
from gateway.delivery.senml_records import encode_poll
from gateway.mqtt.topics import Topics
from gateway.mqtt.uplink import Outgoing
from gateway.polling.event_catchup import Event

NODES = ("lamp-1", "lamp-2")
ROLES = known_roles()
LAMP = ROLES["lamp"]
SEQ_AT = [r.name for r in LAMP.registers].index("seq")
FIRMWARE_AT = [r.name for r in LAMP.registers].index("firmware")


class ModelOutbox:
    """What the SQLite outbox does, in dictionaries: rows survive a restart, in-flight marks do not."""

    def __init__(self) -> None:
        self.rows: dict[int, OutboxRecord] = {}
        self.last_id = 0
        self.session = 0
        self.inflight: set[int] = set()
        self.evicted: set[int] = set()

    def restart(self) -> None:
        self.inflight.clear()

    def put(self, records: tuple[OutboxRecord, ...], *, held: bool) -> tuple[Entry, ...]:
        entries = []
        for r in records:
            self.last_id += 1
            self.rows[self.last_id] = r
            entries.append(self.entry(self.last_id))
        if held:
            self.inflight.update(e.id for e in entries)
        return tuple(entries)

    def entry(self, rid: int) -> Entry:
        r = self.rows[rid]
        return Entry(rid, r.node, r.seq, r.kind, r.created, r.payload, 0, r.historical)

    def take(self, limit: int, max_id: int) -> tuple[Entry, ...]:
        ids = sorted(i for i in self.rows if i <= max_id and i not in self.inflight)[:limit]
        self.inflight.update(ids)
        return tuple(self.entry(i) for i in ids)

    def ack(self, ids: tuple[int, ...]) -> None:
        for i in ids:
            self.rows.pop(i, None)
            self.inflight.discard(i)

    def release(self, ids: tuple[int, ...]) -> None:
        self.inflight.difference_update(ids)

    def evict(self, count: int) -> int:
        """The budget: the oldest readings not in flight go."""
        victims = sorted(i for i, r in self.rows.items() if i not in self.inflight and r.kind == Kind.READING)[:count]
        for i in victims:
            del self.rows[i]
        self.evicted.update(victims)
        return len(victims)


def seq_of(msg: Outgoing, births: dict[bytes, Any]) -> int:
    """The ``seq`` a consumer reads from a message of any kind."""
    props = dict(msg.properties)
    if "seq" in props:
        return int(props["seq"])
    if msg.topic.endswith("/compact"):
        birth_id = cbor2.loads(msg.payload)[3]
        return compact.decode(msg.payload, births[birth_id]).seq
    return int(cbor2.loads(msg.payload)["seq"])


class DeliveryMachineTest(RuleBasedStateMachine):
    """Drives one DeliveryMachine (replaced at every restart) with a model outbox and a fake broker."""

    @initialize(profile=st.sampled_from(["senml", "compact"]))
    def start(self, profile: str) -> None:
        self.settings = Settings(profile, batch_max=2, batch_interval=1.0, drain_rate=5.0,
                                 window=4, live_max=1, pending_max=8)
        self.outbox = ModelOutbox()
        self.now = 0.0
        self.seq = {n: 0 for n in NODES}
        self.event_seq = {n: 0 for n in NODES}
        self.stored: set[int] = set()  # every id ever stored
        self.delivered: set[int] = set()  # ids the broker acknowledged
        self.ack_on_disk: set[int] = set()  # acknowledged and deleted from the outbox
        self.acked_here: set[int] = set()  # acknowledged to the current machine (an ack may still wait for the disk)
        self.dropped = 0
        self.boot()

    def boot(self) -> None:
        self.machine = DeliveryMachine(self.settings, NODES)
        self.messages = Messages(Topics("site", "gw"), "site", "gw", ROLES)
        self.messages.nodes([(n, "lamp") for n in NODES])
        self.births: dict[bytes, Any] = {}
        self.broker: list[tuple[int, ...]] = []  # data messages sent and not yet acknowledged or returned
        self.connected = False
        self.session_seqs: list[int] = []
        self.disk: list[ev.Stored | ev.Taken] = []  # answers of the outbox thread on their way back, in order

    # -- the driver's part, without I/O -------------------------------------------------------------------------

    def carry_out(self, actions: list[ev.Action]) -> None:
        for action in actions:
            match action:
                case ev.Store(records, held, session):
                    entries = self.outbox.put(records, held=held)
                    self.stored.update(e.id for e in entries)
                    if held:  # the answer comes back later: anything may happen meanwhile
                        self.disk.append(ev.Stored(entries, session, self.now))
                case ev.Ack(ids):
                    self.outbox.ack(ids)
                    self.ack_on_disk.update(ids)
                case ev.Release(ids):
                    self.outbox.release(ids)
                case ev.Take(limit, max_id, session):
                    self.disk.append(ev.Taken(self.outbox.take(limit, max_id), session))
                case ev.Publish(entries, historical, lane):
                    for e in entries:
                        assert e.id in self.outbox.inflight, f"entry {e.id} published while not in flight"
                    msgs, unreadable = self.messages.data(list(entries), events=lane is ev.Lane.EVENTS,
                                                          historical=historical, profile=self.settings.profile)
                    assert not unreadable
                    for msg in msgs:
                        self.send(msg, historical)
                case ev.SendBirths(gateway, nodes):
                    if gateway:
                        self.send(self.messages.gateway_birth(session=self.outbox.session, ts=self.now,
                                                              profile=self.settings.profile))
                    for node, fw in nodes:
                        self.send(self.messages.node_birth(node, firmware=fw, ts=self.now))
                case ev.ReportStatus():
                    self.send(self.messages.status(stored=len(self.stored), dropped={}, duplicates=0,
                                                   depth=len(self.outbox.rows), ts=self.now))
                    self.machine.handle(ev.StatusSent(self.now))
                case ev.CountDrops(count):
                    self.dropped += count

    def send(self, msg: Outgoing, historical: bool = False) -> None:
        if msg.topic == self.messages.topics.birth:  # seq 0: a (re)birth starts the count again
            self.births[self.messages.birth["birth"]] = self.messages.birth
            self.session_seqs = []
        seq = seq_of(msg, self.births)
        assert seq not in self.session_seqs, f"seq {seq} repeats within the session: {self.session_seqs}"
        self.session_seqs.append(seq)
        if not msg.entries:
            return
        for rid in msg.entries:
            assert rid not in self.acked_here, f"record {rid} resent after its acknowledgement"
            assert rid not in self.ack_on_disk, f"record {rid} resent after its acknowledgement reached the disk"
            assert all(rid not in m for m in self.broker), f"record {rid} in two unacknowledged messages"
        self.machine.handle(ev.Sent(msg.entries, historical))
        self.broker.append(msg.entries)

    # -- rules --------------------------------------------------------------------------------------------------

    @rule(node=st.sampled_from(NODES), firmware=st.sampled_from([0x100, 0x101]))
    def poll(self, node: str, firmware: int) -> None:
        self.seq[node] += 1
        raws = [0] * len(LAMP.registers)
        raws[SEQ_AT], raws[FIRMWARE_AT] = self.seq[node], firmware
        payload = encode_poll(LAMP.schema.id, int(self.now * 1000), raws)
        record = OutboxRecord(node, self.seq[node], Kind.READING, self.now, payload)
        self.carry_out(self.machine.handle(ev.Recorded(record, firmware)))

    @rule(node=st.sampled_from(NODES))
    def events(self, node: str) -> None:
        """An event log read: stored at once, held if a session is open (as record_events does)."""
        self.event_seq[node] += 1
        e = Event(self.event_seq[node], self.now, 1, 0)
        record = OutboxRecord(node, e.seq, Kind.EVENT, self.now, e.payload())
        session = self.machine.holding_session
        entries = self.outbox.put((record,), held=session is not None)
        self.stored.update(x.id for x in entries)
        if session is not None:
            self.disk.append(ev.Stored(entries, session, self.now))

    @precondition(lambda self: self.disk)
    @rule()
    def disk_answers(self) -> None:
        """The outbox thread's oldest answer reaches the loop."""
        self.carry_out(self.machine.handle(self.disk.pop(0)))

    @precondition(lambda self: not any(isinstance(d, ev.Stored) for d in self.disk))  # the writer awaits its put
    @rule()
    def write(self) -> None:
        self.carry_out(self.machine.handle(ev.WriteDue()))
        self.machine.handle(ev.Counted(len(self.outbox.evicted)))

    @precondition(lambda self: not self.connected)
    @rule()
    def connect(self) -> None:
        self.outbox.session += 1
        self.carry_out(self.machine.handle(ev.SessionOpening(self.outbox.session, self.outbox.last_id)))
        self.machine.handle(ev.SessionOpened(self.now))
        self.connected = True

    @precondition(lambda self: not any(isinstance(d, ev.Taken) for d in self.disk))  # the composer awaits its take
    @rule(dt=st.sampled_from([0.0, 0.3, 1.0, 5.0]))
    def tick(self, dt: float) -> None:
        self.now += dt
        self.carry_out(self.machine.handle(ev.Tick(self.now)))

    @precondition(lambda self: self.broker)
    @rule(data=st.data())
    def ack(self, data: st.DataObject) -> None:
        self.acknowledge(data.draw(st.integers(0, len(self.broker) - 1)))

    def acknowledge(self, index: int) -> None:
        """The broker's PUBACK for the index-th unacknowledged message."""
        ids = self.broker.pop(index)
        self.delivered.update(ids)
        self.acked_here.update(ids)
        self.carry_out(self.machine.handle(ev.Acked(ids)))

    @precondition(lambda self: self.connected)
    @rule()
    def disconnect(self) -> None:
        """The connection drops: the session ends, every unacknowledged message comes back."""
        self.end_session(self.broker)

    @precondition(lambda self: self.connected and self.broker)
    @rule(data=st.data())
    def refuse(self, data: st.DataObject) -> None:
        """The broker refuses one publish (MQTT 5): the uplink ends the session; that message comes back first."""
        refused = self.broker.pop(data.draw(st.integers(0, len(self.broker) - 1)))
        self.end_session([refused, *self.broker])

    def end_session(self, unacknowledged: list[tuple[int, ...]]) -> None:
        """The uplink's end of a session: session_closed(), then returned() for what the broker did not ack."""
        self.carry_out(self.machine.handle(ev.SessionClosed()))
        for ids in list(unacknowledged):
            self.carry_out(self.machine.handle(ev.Returned(ids)))
        self.broker.clear()
        self.connected = False

    @rule()
    def flush(self) -> None:
        self.carry_out(self.machine.handle(ev.Flush(self.now)))

    @rule(nodes=st.sampled_from([(ev.GATEWAY,), ("lamp-1",), NODES]))
    def rebirth(self, nodes: tuple[str, ...]) -> None:
        self.machine.handle(ev.Rebirth(nodes))

    @rule()
    def restart(self) -> None:
        """The gateway dies (SIGKILL): memory is gone, the outbox file stays."""
        self.outbox.restart()
        self.acked_here.clear()
        self.boot()

    @rule(count=st.integers(1, 3))
    def budget(self, count: int) -> None:
        self.outbox.evict(count)

    # -- invariants ---------------------------------------------------------------------------------------------

    @invariant()
    def nothing_stored_is_lost(self) -> None:
        if not hasattr(self, "outbox"):
            return
        lost = self.stored - set(self.outbox.rows) - self.delivered - self.outbox.evicted
        assert not lost, f"stored, not delivered, not counted, and gone: {sorted(lost)}"
        assert self.ack_on_disk <= self.delivered, "deleted without the broker's acknowledgement"

    @invariant()
    def held_means_in_flight(self) -> None:
        if not hasattr(self, "outbox"):
            return
        for ids in self.machine.in_flight:
            assert set(ids) <= self.outbox.inflight, "a message with the broker whose entries are not in flight"

    def teardown(self) -> None:
        """Connected to a broker that acknowledges everything, the outbox drains to empty."""
        if not hasattr(self, "outbox"):
            return
        stalled = 0
        while stalled < 20 and (self.outbox.rows or self.machine.write_due or self.disk):
            before = (len(self.outbox.rows), len(self.delivered))
            while self.disk:
                self.disk_answers()
            if not self.connected:
                self.connect()
            self.write()
            while self.disk:
                self.disk_answers()
            self.tick(1.0)
            while self.disk:
                self.disk_answers()
            while self.broker:
                self.acknowledge(0)
            self.nothing_stored_is_lost()
            stalled = stalled + 1 if (len(self.outbox.rows), len(self.delivered)) == before else 0
        assert not self.outbox.rows, f"never delivered: {sorted(self.outbox.rows)}"


DeliveryMachineTest.TestCase.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)
test_delivery_machine = DeliveryMachineTest.TestCase


def test_the_machine_imports_no_io() -> None:
    """machine.py and its vocabulary load without asyncio, sqlite3, aiomqtt or paho (checked in a fresh process)."""
    code = (
        "import sys; import gateway.delivery.machine; "
        "print(sorted(m for m in ('asyncio', 'sqlite3', 'aiomqtt', 'paho', 'socket') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"the delivery machine pulls in I/O modules: {out.strip()}"
