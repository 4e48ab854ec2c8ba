"""Message building and numbering: seq per session, births, compact against the current table, fallbacks."""

from __future__ import annotations

import cbor2

from gateway.delivery import compact
from gateway.delivery.birth import Field, NodeSchema, encode_schema, schema_id
from gateway.delivery.messages import Messages, known_roles
from gateway.delivery.outbox import Entry, Kind
from gateway.delivery.senml_records import decode_poll, encode_poll
from gateway.mqtt.topics import Topics

ROLES = known_roles()
LAMP = ROLES["lamp"]


def entry(i: int, node: str, schema: bytes | None = None, raws: list[int] | None = None) -> Entry:
    raws = raws or [int(r.minimum) for r in LAMP.registers]
    payload = encode_poll(schema or LAMP.schema.id, 1_798_761_600_000 + i, raws)
    return Entry(i, node, i, Kind.READING, 1_798_761_600.0, payload, 0, False)


def messages(*nodes: str) -> Messages:
    m = Messages(Topics("s", "g"), "s", "g", ROLES)
    m.nodes([(n, "lamp") for n in nodes])
    return m


def test_every_message_of_a_session_counts_on_from_the_birth() -> None:
    m = messages("lamp-1", "lamp-2")
    gb = m.gateway_birth(session=4, ts=1.0, profile="compact")
    nb = m.node_birth("lamp-1", firmware=256, ts=1.0)
    (data,), _ = m.compact([entry(1, "lamp-1"), entry(2, "lamp-2")], historical=False)
    single = m.senml(entry(3, "lamp-2"), historical=True)
    assert single is not None
    assert [cbor2.loads(gb.payload)["seq"], cbor2.loads(nb.payload)["seq"], cbor2.loads(data.payload)[1]] == [0, 1, 2]
    assert dict(single.properties) == {"seq": "3", "session": "4", "historical": "1"}
    assert m.gateway_birth(session=5, ts=2.0, profile="compact").payload != gb.payload
    assert m.seq == 0


def test_a_new_node_table_is_what_compact_messages_cite_at_once() -> None:
    m = messages("lamp-1")
    m.gateway_birth(session=1, ts=1.0, profile="compact")
    before = m.birth["birth"]
    m.nodes([("lamp-1", "lamp"), ("lamp-9", "lamp")])
    assert m.birth["birth"] != before
    (data,), others = m.compact([entry(1, "lamp-9")], historical=False)
    assert others == []
    assert compact.decode(data.payload, cbor2.loads(cbor2.dumps(m.birth))).rows[0][0] == "lamp-9"


def test_what_the_birth_cannot_index_goes_back_for_senml() -> None:
    """A node not in the table, or a poll under another schema, is handed back; SenML describes itself."""
    fields = (Field("x", None, 0, "u16"),)
    old = NodeSchema("lamp", fields, schema_id(["lamp", [list(f) for f in fields]]))
    m = messages("lamp-1")
    m.described = {old.id: cbor2.loads(encode_schema(old))}
    m.gateway_birth(session=1, ts=1.0, profile="compact")
    stranger, renamed = entry(1, "lamp-7"), entry(2, "lamp-1", schema=old.id, raws=[5])
    msgs, others = m.compact([stranger, renamed], historical=False)
    assert msgs == [] and others == [stranger, renamed]
    back = m.senml(renamed, historical=True)
    assert back is not None and b"x" in back.payload
    unknown = entry(3, "lamp-1", schema=b"zzzz", raws=[1])
    assert decode_poll(unknown.payload).schema == b"zzzz"
    assert m.senml(unknown, historical=False) is None
