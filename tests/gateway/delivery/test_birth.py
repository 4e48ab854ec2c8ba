"""Births, death and state: schemas from the register maps, ids that follow the content, CBOR as documented."""

from __future__ import annotations

import cbor2

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.delivery import birth
from gateway.delivery.senml_records import decode_poll, encode_poll, poll_raws, poll_seq

LAMP = load_role("lamp")


def test_a_schema_lists_the_polled_registers_in_poll_order_with_units_and_scales() -> None:
    schema = birth.schema_of(LAMP)
    expected = [r for t in (HOLDING, INPUT) for r in LAMP.registers if r.table == t]
    assert [f.name for f in schema.fields] == [r.name for r in expected]
    power = next(f for f in schema.fields if f.name == "power")
    assert (power.unit, power.scale, power.type) == ("W", -1, "u16")
    assert len(schema.id) == 4
    assert birth.schema_of(LAMP).id == schema.id  # stable


def test_the_schema_id_changes_with_any_field() -> None:
    schema = birth.schema_of(LAMP)
    described = schema.describe()
    described[1][0][2] += 1  # another scale for the first field
    assert birth.schema_id(described) != schema.id
    assert birth.schema_of(load_role("sdm630")).id != schema.id


def test_gateway_birth_indexes_nodes_and_carries_each_schema_once() -> None:
    lamp = birth.schema_of(LAMP)
    meter = birth.schema_of(load_role("sdm630"))
    body = birth.gateway_birth(
        site="s", gateway="g", session=4, ts=10.0, profile="compact",
        nodes=[("lamp-1", lamp), ("meter-1", meter), ("lamp-2", lamp)],
    )
    decoded = cbor2.loads(birth.encode(body))
    assert decoded["seq"] == 0
    assert decoded["session"] == 4
    assert decoded["nodes"] == [["lamp-1", lamp.id], ["meter-1", meter.id], ["lamp-2", lamp.id]]
    assert set(decoded["schemas"]) == {lamp.id, meter.id}
    assert decoded["schemas"][lamp.id][1][0] == ["dim_level", "%", 0, "u16"]
    again = birth.gateway_birth(site="s", gateway="g", session=5, ts=11.0, profile="compact",
                                nodes=[("lamp-1", lamp), ("meter-1", meter), ("lamp-2", lamp)])
    assert again["birth"] == body["birth"]  # same table, same id, whatever the session
    moved = birth.gateway_birth(site="s", gateway="g", session=5, ts=11.0, profile="compact",
                                nodes=[("lamp-2", lamp), ("meter-1", meter), ("lamp-1", lamp)])
    assert moved["birth"] != body["birth"]


def test_node_birth_names_its_schema_and_firmware_and_the_gateway_birth_says_what_a_role_can() -> None:
    schema = birth.schema_of(LAMP)
    body = cbor2.loads(birth.encode(birth.node_birth(
        node="lamp-1", schema=schema, session=2, seq=3, ts=5.0, firmware=0x0100,
    )))
    assert body["firmware"] == 256
    assert body["schema"] == schema.id
    assert "fields" not in body  # once per role, in the gateway birth
    assert len(birth.encode(body)) < 120
    gateway = birth.gateway_birth(site="s", gateway="g", session=2, ts=5.0, profile="senml",
                                  nodes=[("lamp-1", schema)], capabilities={schema.id: birth.capabilities(LAMP)})
    caps = gateway["capabilities"][schema.id]
    assert "write:dim_level" in caps and "events" in caps
    assert "write:power" not in caps


def test_state_and_will_name_the_session() -> None:
    assert cbor2.loads(birth.state(online=True, session=7, ts=1.5)) == {"online": True, "session": 7, "ts": 1.5}
    assert cbor2.loads(birth.state(online=False, session=7)) == {"online": False, "session": 7}


def test_a_poll_record_round_trips_and_knows_its_seq() -> None:
    regs = [r for t in (HOLDING, INPUT) for r in LAMP.registers if r.table == t]
    readings = [(r, int(r.minimum) + 1) for r in reversed(regs)]  # any order in, schema order out
    raws = poll_raws(regs, readings)
    payload = encode_poll(b"abcd", 1_798_761_600_123, raws)
    record = decode_poll(payload)
    assert record == (b"abcd", 1_798_761_600_123, raws)
    assert poll_seq(regs, raws, 99) == raws[[r.name for r in regs].index("seq")]
    meter = [r for r in load_role("sdm630").registers]
    assert poll_seq(meter, [0.0] * len(meter), 99) == 99  # no seq register: the poll time


def test_births_and_the_ids_hashed_from_them_are_core_deterministic_cbor() -> None:
    """RFC 8949 section 4.2.1: the bytes a consumer hashes or compares are the same on any encoder.

    The gateway writes births with cbor2's canonical mode (keys shorter first); for the maps a birth holds
    (text keys, 4-byte schema ids) that order is the bytewise order of core deterministic encoding, which
    protocols.cbor writes on both interpreters: checked here on real births of every shipped role.
    """
    from protocols import cbor

    nodes = [(f"{role}-1", birth.schema_of(load_role(role))) for role in ("lamp", "meter", "env", "sdm630")]
    body = birth.gateway_birth(site="s", gateway="g", session=4, ts=10.5, profile="compact", nodes=nodes,
                               capabilities={nodes[0][1].id: ["events", "write:dim_level"]})
    encoded = birth.encode(body)
    assert cbor.dumps(cbor2.loads(encoded), True) == encoded
    for _, schema in nodes:
        assert cbor.dumps(cbor2.loads(birth.encode_schema(schema)), True) == birth.encode_schema(schema)
    node = birth.encode(birth.node_birth(node="lamp-1", schema=nodes[0][1], session=4, seq=1, ts=1.0,
                                         firmware=256))
    assert cbor.dumps(cbor2.loads(node), True) == node
