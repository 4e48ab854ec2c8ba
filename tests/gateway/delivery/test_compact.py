"""The compact profile: round trips, the same SenML records as the SenML profile, size, refusals."""

from __future__ import annotations

import random
import struct
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contracts import BOOL, HOLDING, INPUT, Register, load_role
from gateway.delivery.birth import gateway_birth, schema_of
from gateway.delivery.compact import DEFLATED, HISTORICAL, CompactError, Row, decode, encode, to_senml
from gateway.delivery.senml_records import build_pack, encode_pack
from protocols import senml

F32 = 5  # protocols.regmap.F32
ROLES = ("lamp", "sdm630")


def ordered(role: str) -> list[Register]:
    """A role's registers in schema order (holding, then input, each in map order)."""
    regmap = load_role(role)
    return [r for t in (HOLDING, INPUT) for r in regmap.registers if r.table == t]


def birth_for(nodes: list[tuple[str, str]], site: str = "district-7") -> dict[str, Any]:
    """A decoded gateway birth for ``(node id, role)`` pairs, through CBOR as a consumer would get it."""
    table = [(node, schema_of(load_role(role))) for node, role in nodes]
    body = gateway_birth(site=site, gateway="cab-1", session=3, ts=1.0, profile="compact", nodes=table)
    decoded: dict[str, Any] = cbor2.loads(cbor2.dumps(body))
    return decoded


def raw_value(reg: Register, rng: random.Random) -> int | float:
    if reg.type == F32:
        return float(struct.unpack(">f", struct.pack(">f", rng.uniform(-1e6, 1e6)))[0])
    return rng.randint(int(reg.minimum), int(reg.maximum))


def resolved(packs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Resolved records of the packs, through SenML-CBOR, in (name, time) order (pack order is not meaning)."""
    records = [r for pack in packs for r in senml.resolve(senml.decode(senml.encode(pack)))]
    return sorted(records, key=lambda r: (r["n"], r["t"]))


def senml_profile(site: str, rows: list[Row], nodes: list[tuple[str, str]]) -> list[list[dict[str, Any]]]:
    """What the SenML profile publishes for the same polls (one pack per poll, time in seconds)."""
    packs = []
    for row in sorted(rows, key=lambda r: (r.node, r.time_ms)):
        node, role = nodes[row.node]
        pack = build_pack(site, node, row.time_ms / 1000, list(zip(ordered(role), row.raws, strict=True)))
        packs.append(senml.from_labels(cbor2.loads(encode_pack(pack))))
    return packs


def random_rows(nodes: list[tuple[str, str]], polls: int, seed: int) -> list[Row]:
    rng = random.Random(seed)
    t = 1_798_761_600_000
    rows = []
    for _ in range(polls):
        index = rng.randrange(len(nodes))
        t += rng.randint(0, 5000)
        rows.append(Row(index, t, [raw_value(reg, rng) for reg in ordered(nodes[index][1])]))
    return rows


@pytest.mark.parametrize("seed", range(5))
def test_both_profiles_give_the_same_records(seed: int) -> None:
    """Decoded back to SenML, a compact message holds exactly the records the SenML profile publishes."""
    nodes = [(f"lamp-{i}", "lamp") for i in range(1, 6)] + [("meter-1", "sdm630"), ("meter-2", "sdm630")]
    birth = birth_for(nodes)
    rows = random_rows(nodes, 40, seed)
    message = encode(rows, birth, seq=seed)
    assert resolved(to_senml(message, birth)) == resolved(senml_profile("district-7", rows, nodes))


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_any_rows_survive_the_round_trip_exactly(data: st.DataObject) -> None:
    """Every raw value inside its register's bounds (f32 bit for bit), every millisecond, either deflate choice."""
    nodes = [("lamp-1", "lamp"), ("lamp-2", "lamp"), ("meter-1", "sdm630")]
    birth = birth_for(nodes)
    rows = []
    for _ in range(data.draw(st.integers(1, 6))):
        index = data.draw(st.integers(0, len(nodes) - 1))
        raws: list[int | float] = []
        for reg in ordered(nodes[index][1]):
            if reg.type == F32:
                raws.append(data.draw(st.floats(width=32, allow_nan=False)))
            else:
                raws.append(data.draw(st.integers(int(reg.minimum), int(reg.maximum))))
        rows.append(Row(index, data.draw(st.integers(1_500_000_000_000, 4_000_000_000_000)), raws))
    historical = data.draw(st.booleans())
    message = decode(encode(rows, birth, seq=255, historical=historical, deflate=data.draw(st.booleans())), birth)
    assert message.seq == 255
    assert message.historical is historical
    expected = sorted((nodes[r.node][0], r.time_ms, list(r.raws)) for r in rows)
    assert sorted(message.rows) == expected


def test_thirty_two_lamps_in_sixty_seconds_take_at_most_two_bytes_per_reading() -> None:
    """The sizing case: every lamp polled once in the minute, values spread as on a real street."""
    nodes = [(f"lamp-{i}", "lamp") for i in range(1, 33)]
    birth = birth_for(nodes)
    regs = ordered("lamp")
    rng = random.Random(7)
    typical = {"dim_level": 40, "relay": 1, "power": 415, "voltage": 2301, "current": 190, "temperature": 312,
               "status": 1, "role": 1, "firmware": 256}
    spread = {"power": 8, "voltage": 15, "current": 4, "temperature": 20}
    rows = []
    for i in range(32):
        raws: list[int | float] = []
        for reg in regs:
            if reg.name in typical:
                raws.append(typical[reg.name] + rng.randint(-spread.get(reg.name, 0), spread.get(reg.name, 0)))
            elif reg.width == 2:  # counters: seq, energy, uptime, clock ... all different per lamp
                raws.append(rng.randint(1000, 3_000_000))
            else:  # settings: the same on every lamp of the street
                raws.append(int(reg.minimum))
        rows.append(Row(i, 1_798_761_600_000 + i * 1875 + rng.randint(0, 50), raws))
    message = encode(rows, birth, seq=9)
    readings = len(rows) * len(regs)
    assert len(message) <= 2 * readings
    senml_bytes = sum(len(encode_pack(p)) for p in senml_profile("district-7", rows, nodes))
    assert senml_bytes > 8 * len(message)


def test_deflate_is_used_only_when_it_pays() -> None:
    nodes = [("lamp-1", "lamp")]
    birth = birth_for(nodes)
    one = [Row(0, 1_798_761_600_000, [int(r.minimum) for r in ordered("lamp")])]
    many = [Row(0, 1_798_761_600_000 + 1000 * i, [int(r.minimum) for r in ordered("lamp")]) for i in range(50)]
    assert cbor2.loads(encode(many, birth, seq=0))[2] & DEFLATED
    small = encode(one, birth, seq=0, deflate=False)
    assert not cbor2.loads(small)[2] & DEFLATED
    assert len(encode(one, birth, seq=0)) <= len(small)


def test_a_message_for_another_birth_is_refused_with_advice() -> None:
    birth = birth_for([("lamp-1", "lamp")])
    other = birth_for([("lamp-1", "lamp"), ("lamp-2", "lamp")])
    message = encode([Row(0, 1_798_761_600_000, [int(r.minimum) for r in ordered("lamp")])], birth, seq=1)
    with pytest.raises(CompactError, match="rebirth"):
        decode(message, other)


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff",
        cbor2.dumps({"a": 1}),
        cbor2.dumps([2, 0, 0, b"abcd", 0, b""]),
        cbor2.dumps([1, 0, DEFLATED, "BIRTH", 0, b"\x00\x01"]),
        cbor2.dumps([1, 0, 0, "BIRTH", 0, cbor2.dumps([[3, b"\x00"]])]),  # columns end early
        cbor2.dumps([1, 0, 0, "BIRTH", 0, cbor2.dumps([[1, b"\x05" + b"\x00" * 200]])]),  # no such node
        cbor2.dumps([1, 0, 0, "BIRTH", 0, cbor2.dumps([[0, b""]])]),
    ],
)
def test_malformed_messages_raise_compact_error(payload: bytes) -> None:
    birth = birth_for([("lamp-1", "lamp")])
    payload = payload.replace(cbor2.dumps("BIRTH"), cbor2.dumps(birth["birth"]))
    with pytest.raises(CompactError):
        to_senml(payload, birth)


def test_flags_mark_historical_rows() -> None:
    birth = birth_for([("lamp-1", "lamp")])
    rows = [Row(0, 1_798_761_600_000, [int(r.minimum) for r in ordered("lamp")])]
    assert cbor2.loads(encode(rows, birth, seq=0, historical=True))[2] & HISTORICAL
    assert decode(encode(rows, birth, seq=0, historical=True), birth).historical


def test_booleans_come_back_as_vb_and_units_as_the_map_says() -> None:
    birth = birth_for([("lamp-1", "lamp")])
    regs = ordered("lamp")
    raws = [1 if r.type == BOOL else int(r.minimum) for r in regs]
    (pack,) = to_senml(encode([Row(0, 1_798_761_600_250, raws)], birth, seq=0), birth)
    assert pack[0]["bn"] == "urn:dev:streetedge:district-7:lamp-1:"
    assert pack[0]["bt"] == 1_798_761_600.25
    by_name = {r["n"]: r for r in pack}
    for reg in regs:
        if reg.type == BOOL:
            assert by_name[reg.name]["vb"] is True
        assert by_name[reg.name].get("u") == reg.unit
