"""The messages of the data path: births, counters, SenML packs, compact batches, events; numbered per session.

:class:`Messages` turns outbox entries into :class:`~gateway.mqtt.uplink.Outgoing`
messages and gives each its ``seq`` (0..255, wrapping) in the order it builds
them: the gateway birth is 0 of its session, and every later message of the
session counts on (in the payload for births, counters and compact messages;
as an MQTT 5 user property for SenML packs and events, with ``session`` and,
for replayed backlog, ``historical``). It knows the schemas of every role of
this gateway, and those the outbox kept from earlier versions (a record
outlives the register map it was polled with).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NamedTuple

import cbor2

from gateway.analytics.flags import Flag, is_flag_seq, senml_records
from gateway.contracts import ROLES, TABLES, Register, load_role
from gateway.delivery import birth, compact
from gateway.delivery.records import Entry
from gateway.delivery.senml_encoder import PackEncoder
from gateway.delivery.senml_records import base_name, decode_poll, encode_pack
from gateway.mqtt.topics import Topics
from gateway.mqtt.uplink import Outgoing
from gateway.polling.event_catchup import Event, event_names
from gateway.update import rollout_events

log = logging.getLogger(__name__)


class Known(NamedTuple):
    """A role's schema and its registers in schema order."""

    schema: birth.NodeSchema
    registers: list[Register]


def known_roles() -> dict[str, Known]:
    """The schema of every role this gateway knows, by role."""
    out = {}
    for role in ROLES:
        regmap = load_role(role)
        regs = [r for t in TABLES for r in regmap.registers if r.table == t]
        out[role] = Known(birth.schema_of(regmap), regs)
    return out


class Messages:
    """Builds and numbers the messages of one gateway's data path.

    Args:
        topics: the gateway's topics.
        site: site id (SenML base names).
        gateway: gateway id.
        roles: the schema of every role (:func:`known_roles`).
    """

    def __init__(self, topics: Topics, site: str, gateway: str, roles: Mapping[str, Known]) -> None:
        self.topics = topics
        self.site = site
        self.gateway = gateway
        self.roles = dict(roles)
        self.by_id = {k.schema.id: k for k in roles.values()}
        self.caps = {k.schema.id: birth.capabilities(load_role(role)) for role, k in roles.items()}
        self.described: dict[bytes, list[Any]] = {}
        """Schema descriptions kept by the outbox (earlier register maps included), by id."""
        self.session = 0
        self.seq = 0
        self.birth: dict[str, Any] = {}
        """The current gateway birth (what compact messages cite)."""
        self.table: list[tuple[str, birth.NodeSchema]] = []
        self.index: dict[str, int] = {}
        self.node_roles: dict[str, str] = {}
        self._encoders: dict[str, PackEncoder] = {}

    def learn(self, roles: Mapping[str, Known]) -> None:
        """Roles new or changed since start: device profiles that a reloaded configuration names."""
        self.roles.update(roles)
        for role, known in roles.items():
            self.by_id[known.schema.id] = known
            self.caps[known.schema.id] = birth.capabilities(load_role(role))

    def nodes(self, nodes: list[tuple[str, str]]) -> None:
        """The node table, ``(node id, role)`` in configuration order: the indexes compact messages use."""
        self.table = [(node_id, self.roles[role].schema) for node_id, role in nodes]
        self.index = {node_id: i for i, (node_id, _) in enumerate(self.table)}
        self.node_roles = dict(nodes)
        if self.birth:  # during a session: compact messages cite the new table from now on
            self.birth = birth.gateway_birth(
                site=self.site, gateway=self.gateway, session=self.session, ts=self.birth["ts"],
                profile=self.birth["profile"], nodes=self.table, capabilities=self.caps,
            )

    def next_seq(self) -> int:
        """The next message's sequence number."""
        self.seq = (self.seq + 1) % birth.SEQ_MODULUS
        return self.seq

    # -- births and counters ---------------------------------------------------------------------------------------

    def gateway_birth(self, *, session: int, ts: float, profile: str) -> Outgoing:
        """The gateway birth of a (new) session, seq 0; it becomes the birth compact messages cite."""
        self.session = session
        self.birth = birth.gateway_birth(
            site=self.site, gateway=self.gateway, session=session, ts=ts, profile=profile,
            nodes=self.table, capabilities=self.caps,
        )
        self.seq = 0
        return Outgoing(self.topics.birth, birth.encode(self.birth), retain=True)

    def node_birth(self, node_id: str, *, firmware: int | None, ts: float) -> Outgoing:
        """A node birth, numbered next."""
        body = birth.node_birth(node=node_id, schema=self.roles[self.node_roles[node_id]].schema,
                                session=self.session, seq=self.next_seq(), ts=ts, firmware=firmware)
        return Outgoing(self.topics.node_birth(node_id), birth.encode(body), retain=True)

    def status(self, *, stored: int, dropped: Mapping[str, int], duplicates: int, depth: int, ts: float) -> Outgoing:
        """The retained delivery counters."""
        body = {"session": self.session, "seq": self.next_seq(), "ts": ts, "stored": stored,
                "dropped": dict(dropped), "duplicates": duplicates, "depth": depth}
        return Outgoing(self.topics.delivery, cbor2.dumps(body), retain=True)

    # -- data ------------------------------------------------------------------------------------------------------

    def _props(self, historical: bool) -> tuple[tuple[str, str], ...]:
        props = [("seq", str(self.next_seq())), ("session", str(self.session))]
        if historical:
            props.append(("historical", "1"))
        return tuple(props)

    def senml(self, entry: Entry, *, historical: bool) -> Outgoing | None:
        """The SenML message of one stored poll; None if no schema here can read it (never expected)."""
        poll = decode_poll(entry.payload)
        known = self.by_id.get(poll.schema)
        if known is not None:
            encoder = self._encoders.get(entry.node)
            if encoder is None or encoder.site != self.site:
                encoder = self._encoders[entry.node] = PackEncoder(self.site, entry.node)
            payload = encoder.encode(poll.time_ms / 1000, list(zip(known.registers, poll.raws, strict=True)))
        elif poll.schema in self.described:  # recorded under a register map that has changed since (an upgrade)
            fields = self.described[poll.schema][1]
            payload = encode_pack(compact.pack(self.site, entry.node, poll.time_ms, fields, poll.raws))
        else:  # every schema a record cites was kept when the record was
            log.error("outbox record %d of %s cites unknown schema %s", entry.id, entry.node, poll.schema.hex())
            return None
        return Outgoing(self.topics.data(entry.node), payload, records=len(poll.raws), entries=(entry.id,),
                        properties=self._props(historical))

    def events(self, entries: list[Entry], *, historical: bool) -> list[Outgoing]:
        """One SenML message of events per node: per event its name, seq, code and value at its time.

        Analytics flags travel with the node's events: ``flag`` (or ``report``) with the rule, then its seq,
        baseline, observed value, detail and evidence (:func:`gateway.analytics.flags.senml_records`); so do the
        steps of a node's update (:mod:`gateway.update.rollout_events`).
        """
        by_node: dict[str, list[Entry]] = {}
        for entry in entries:
            by_node.setdefault(entry.node, []).append(entry)
        out = []
        for node_id, group in by_node.items():
            names = event_names(self.node_roles.get(node_id, "lamp"))
            pack: list[dict[str, Any]] = []
            for entry in group:
                if rollout_events.is_rollout_seq(entry.seq):  # a step of the node's update (gateway.update)
                    step = rollout_events.RolloutStep.from_payload(entry.seq, entry.payload)
                    pack += rollout_events.senml_records(step)
                    continue
                if is_flag_seq(entry.seq):  # an analytics flag about the node (gateway.analytics)
                    pack += senml_records(Flag.from_payload(node_id, entry.payload), entry.seq)
                    continue
                e = Event.from_payload(entry.seq, entry.payload)
                pack += [
                    {"n": "event", "t": e.time, "vs": names.get(e.code, f"event_{e.code}")},
                    {"n": "event_seq", "t": e.time, "v": e.seq},
                    {"n": "event_code", "t": e.time, "v": e.code},
                    {"n": "event_value", "t": e.time, "v": e.value},
                ]
                if e.estimated:
                    pack.append({"n": "event_time_estimated", "t": e.time, "vb": True})
            pack[0] = {"bn": base_name(self.site, node_id), **pack[0]}
            out.append(Outgoing(self.topics.event(node_id), encode_pack(pack), records=len(group),
                                entries=tuple(e.id for e in group), properties=self._props(historical)))
        return out

    def compact(self, entries: list[Entry], *, historical: bool) -> tuple[list[Outgoing], list[Entry]]:
        """One compact message of the polls the current birth indexes, and the entries it cannot read.

        Entries of a node no longer in the table, or polled under another schema, come back for the SenML
        path, which describes itself.
        """
        rows: list[compact.Row] = []
        ids: list[int] = []
        others: list[Entry] = []
        for entry in entries:
            poll = decode_poll(entry.payload)
            index = self.index.get(entry.node)
            if index is None or self.table[index][1].id != poll.schema:
                others.append(entry)
                continue
            rows.append(compact.Row(index, poll.time_ms, poll.raws))
            ids.append(entry.id)
        if not rows:
            return [], others
        payload = compact.encode(rows, self.birth, seq=self.next_seq(), historical=historical)
        readings = sum(len(r.raws) for r in rows)
        return [Outgoing(self.topics.compact, payload, records=readings, entries=tuple(ids))], others

    def data(self, entries: list[Entry], *, events: bool, historical: bool,
             profile: str) -> tuple[list[Outgoing], list[int]]:
        """The data messages of entries in ``profile`` (events: per node), and the ids no schema here can read."""
        if events:
            return self.events(entries, historical=historical), []
        msgs: list[Outgoing] = []
        others = entries
        if profile == "compact":
            msgs, others = self.compact(entries, historical=historical)
        unreadable: list[int] = []
        for entry in others:
            msg = self.senml(entry, historical=historical)
            if msg is None:
                unreadable.append(entry.id)
            else:
                msgs.append(msg)
        return msgs, unreadable
