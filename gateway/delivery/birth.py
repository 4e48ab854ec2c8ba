"""Birth, death and state certificates: what a consumer needs to read the data that follows.

The ideas are Sparkplug B's, the encoding CBOR. Every broker connection is a
*session* with a number that only grows (persisted in the outbox), and every
message of a session carries a sequence number ``seq`` (0..255, wrapping) in
the order published, so a consumer sees a gap as a lost message:

- the gateway birth (``<root>/birth``, retained, ``seq`` 0): the node table
  (node id and schema id, in the order compact messages refer to them) and one
  schema per role: field names, units, scales, types, in data order, and what a
  node of the role lets the gateway do (its capabilities);
- a node birth (``<root>/birth/<node>``, retained): the node's role, its
  schema (by id: the fields are in the gateway birth, once per role, not once
  per node, which keeps a session's births small on a metered link) and
  firmware version; published at each session start and again whenever the
  node's firmware changes;
- the state (``<root>/state``, retained): ``{"online": true, "session": n,
  "ts": ...}`` at connect; the MQTT Will (the death certificate) is
  ``{"online": false, "session": n}`` for the same ``n``, so a consumer can tell
  the death of this session from that of an earlier one.

A schema is the ordered list of a role's registers as a poll reports them; its
id is the first 4 bytes of the SHA-256 of its canonical CBOR, so equal schemas
have equal ids on every gateway and a changed register map gets a new one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import cbor2

from gateway.contracts import TABLES, RegisterMap

BIRTH_VERSION = 1
"""Version of the birth payloads (``"v"``); bumped when their meaning changes."""

TYPE_NAMES = ("u16", "s16", "u32", "s32", "bool", "f32")
"""Register type codes (``protocols.regmap``) by name, as births spell them."""

SEQ_MODULUS = 256
"""Message sequence numbers run 0..255 and wrap, as in Sparkplug."""

_RW = 1  # protocols.regmap.RW: a register the gateway may write


class Field(NamedTuple):
    """One value of a poll: register name, SenML unit (or None), power-of-ten scale, type name."""

    name: str
    unit: str | None
    scale: int
    type: str


class NodeSchema(NamedTuple):
    """A role's fields in the order a poll reports them, and the schema's id (4 bytes)."""

    role: str
    fields: tuple[Field, ...]
    id: bytes

    def describe(self) -> list[Any]:
        """``[role, [[name, unit, scale, type], ...]]``: the schema as births carry it."""
        return [self.role, [list(f) for f in self.fields]]


def schema_of(regmap: RegisterMap) -> NodeSchema:
    """The schema of a role: holding, input registers, coils, discrete inputs, each in map order (as polled)."""
    fields = tuple(
        Field(reg.name, reg.unit, reg.scale, TYPE_NAMES[reg.type])
        for table in TABLES
        for reg in regmap.registers
        if reg.table == table
    )
    body = [regmap.role, [list(f) for f in fields]]
    return NodeSchema(regmap.role, fields, schema_id(body))


def encode_schema(schema: NodeSchema) -> bytes:
    """Canonical CBOR of a schema's description (what its id is the hash of)."""
    return cbor2.dumps(schema.describe(), canonical=True)


def schema_id(described: Sequence[Any]) -> bytes:
    """4-byte id of a described schema (``NodeSchema.describe()``)."""
    return hashlib.sha256(cbor2.dumps(described, canonical=True)).digest()[:4]


def gateway_birth(
    *,
    site: str,
    gateway: str,
    session: int,
    ts: float,
    profile: str,
    nodes: Sequence[tuple[str, NodeSchema]],
    capabilities: Mapping[bytes, Sequence[str]] | None = None,
) -> dict[str, Any]:
    """The gateway birth map (``seq`` 0 of its session); ``birth`` is the id compact messages cite.

    Args:
        site: site id (part of every SenML base name).
        gateway: gateway id.
        session: the session number (also in the state and the Will).
        ts: epoch seconds.
        profile: the data profile in use, ``"compact"`` or ``"senml"``.
        nodes: ``(node id, schema)`` in the order compact messages index them.
        capabilities: per schema id, what a node of it lets the gateway do (:func:`capabilities`).
    """
    schemas = {s.id: s.describe() for _, s in nodes}
    table = [[node_id, s.id] for node_id, s in nodes]
    return {
        "v": BIRTH_VERSION,
        "site": site,
        "gateway": gateway,
        "session": session,
        "seq": 0,
        "ts": ts,
        "profile": profile,
        "birth": birth_id(table, schemas),
        "nodes": table,
        "schemas": schemas,
        "capabilities": {sid: list(caps) for sid, caps in (capabilities or {}).items() if sid in schemas},
    }


def birth_id(table: Sequence[Sequence[Any]], schemas: Mapping[bytes, Any]) -> bytes:
    """4-byte id of a node table with its schemas: compact messages name the birth they were encoded for."""
    body: list[Any] = [table, dict(schemas.items())]
    return hashlib.sha256(cbor2.dumps(body, canonical=True)).digest()[:4]


def node_birth(
    *,
    node: str,
    schema: NodeSchema,
    session: int,
    seq: int,
    ts: float,
    firmware: int | None,
) -> dict[str, Any]:
    """A node birth map: the node's role, schema id (its fields are in the gateway birth) and firmware version.

    ``firmware`` is None until the node has been read once.
    """
    return {
        "v": BIRTH_VERSION,
        "node": node,
        "session": session,
        "seq": seq,
        "ts": ts,
        "role": schema.role,
        "schema": schema.id,
        "firmware": firmware,
    }


def capabilities(regmap: RegisterMap) -> list[str]:
    """What a node of this role lets the gateway do: ``write:<register>`` per writable register, and ``events``
    if it keeps an event log the gateway reads; sorted."""
    caps = [f"write:{reg.name}" for reg in regmap.registers if reg.access == _RW]
    if "event_from" in regmap:
        caps.append("events")
    return sorted(caps)


def state(*, online: bool, session: int, ts: float | None = None) -> bytes:
    """The state payload: ``{"online", "session", "ts"}``; the Will leaves ``ts`` out (it is written in advance)."""
    body: dict[str, Any] = {"online": online, "session": session}
    if ts is not None:
        body["ts"] = ts
    return cbor2.dumps(body)


def encode(body: Mapping[str, Any]) -> bytes:
    """CBOR of a birth map, preferred serialisation (so equal births are equal bytes)."""
    return cbor2.dumps(dict(body), canonical=True)
