"""Profile devices in the compact data profile: coils, discrete inputs and floats survive the round trip exactly."""

from __future__ import annotations

import random
import struct
from typing import Any

import cbor2
import pytest

from gateway.contracts import BOOL, TABLES, Register, load_role
from gateway.delivery.birth import gateway_birth, schema_of
from gateway.delivery.compact import Row, decode, encode, to_senml
from protocols import senml

NODES = [("relays", "relay8"), ("meter", "sdm120"), ("meter3", "sdm630")]


def ordered(role: str) -> list[Register]:
    regmap = load_role(role)
    return [r for t in TABLES for r in regmap.registers if r.table == t]


def raw(reg: Register, rng: random.Random) -> int | float:
    if reg.type == 5:  # float32: a value the wire can carry bit for bit
        return float(struct.unpack(">f", struct.pack(">f", rng.uniform(-1e5, 1e5)))[0])
    return rng.randint(int(reg.minimum), int(reg.maximum))


@pytest.mark.parametrize("seed", range(3))
def test_profile_devices_round_trip_through_a_compact_message(seed: int) -> None:
    rng = random.Random(seed)
    table = [(node, schema_of(load_role(role))) for node, role in NODES]
    birth: dict[str, Any] = cbor2.loads(cbor2.dumps(
        gateway_birth(site="s", gateway="g", session=1, ts=1.0, profile="compact", nodes=table)))
    rows = [Row(i % 3, 1_798_761_600_000 + 1000 * i, [raw(r, rng) for r in ordered(NODES[i % 3][1])])
            for i in range(12)]
    message = decode(encode(rows, birth, seq=seed), birth)
    assert sorted(message.rows) == sorted((NODES[r.node][0], r.time_ms, list(r.raws)) for r in rows)
    records = [r for pack in to_senml(encode(rows, birth, seq=seed), birth) for r in senml.resolve(pack)]
    first = rows[0].time_ms / 1000
    relays = {r["n"].rsplit(":", 1)[-1]: r for r in records if ":relays:" in r["n"] and r["t"] == first}
    coils = [reg for reg in ordered("relay8") if reg.type == BOOL]
    assert len(coils) == 16
    for reg, value in zip(ordered("relay8"), rows[0].raws, strict=True):
        if reg.type == BOOL:
            assert relays[reg.name]["vb"] is bool(value)
        else:
            assert relays[reg.name]["v"] == value
