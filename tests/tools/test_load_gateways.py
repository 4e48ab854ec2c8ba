"""The many-gateways load generator: real payloads, and short runs against Mosquitto, in the clear and over TLS."""

from __future__ import annotations

import asyncio
import random
import tempfile
from pathlib import Path

import cbor2

from gateway.delivery import compact
from tools.load_gateways import Tls, measure, table, traffic, wire_costs


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


def test_over_tls_the_fleet_delivers_and_the_handshake_and_records_cost_bytes() -> None:
    with tempfile.TemporaryDirectory(prefix="streetedge-tls-") as folder:  # pytest's are private to the broker
        check_tls(Tls(Path(folder)))


def check_tls(tls: Tls) -> None:
    sample = traffic(0, 2, random.Random(1))
    wire = wire_costs(tls, sample, count=10)
    plain, secure = wire["plain"], wire["tls"]
    # a TLS 1.3 handshake carries both certificate chains and signatures: over a kilobyte each way
    assert secure.handshake_sent > 500 and secure.handshake_received > 500
    assert secure.sent + secure.received > plain.sent + plain.received + 1000
    # each record (PUBLISH, PUBACK) gains a header and an authentication tag; the payload is not padded
    assert 2 * 16 <= wire["tls_message"] - wire["plain_message"] < 200
    figures = asyncio.run(measure(gateways=3, lamps=2, seconds=2.0, interval=0.5, tls=tls))
    assert figures["in_per_s"] > 0 and figures["out_per_s"] > 0
