"""The many-gateways load generator: real payloads, and a short run against Mosquitto."""

from __future__ import annotations

import asyncio
import random

import cbor2

from gateway import compact
from tools.load_gateways import measure, table, traffic


def test_a_simulated_gateway_sends_what_a_real_one_sends() -> None:
    t = traffic(3, 4, random.Random(1))
    topics = [topic for topic, _ in t.opening]
    assert topics[:2] == [t.root + "/state", t.root + "/birth"]
    assert len([x for x in topics if "/birth/" in x]) == 4
    gateway_birth = cbor2.loads(t.opening[1][1])
    assert len(compact.to_senml(t.periodic[1], gateway_birth)) == 4


def test_a_short_run_measures_the_broker() -> None:
    figures = asyncio.run(measure(gateways=5, lamps=2, seconds=3.0, interval=0.5))
    assert figures["in_per_s"] > 0
    assert figures["out_per_s"] > 0
    assert figures["cpu_per_1000"] >= 0
    assert "per gateway" in table(figures)
