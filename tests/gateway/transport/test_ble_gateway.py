"""The gateway's BLE nodes end to end on the virtual radio: Bumble devices advertise, bleak (Bumble backend)
scans, the gateway decrypts and stores, Mosquitto carries the readings, paho reads them.

Real parts: Mosquitto, SQLite files (outbox, replay windows), bleak's public API, Bumble's controllers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
from waiting import until

from gateway.service.config import Config, parse_config
from gateway.service.daemon import Gateway
from protocols import senml
from protocols.roles import meter
from tools.sim.ble_beacons import Beacon
from tools.sim.bleak_bumble import scanner_backend
from tools.sim.radio import VirtualRadio

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ADDRESS = "D0:5E:00:00:00:07"


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    task = asyncio.create_task(gateway.run())
    try:
        await until(lambda: gateway.ble is not None or task.done())
        yield gateway
    finally:
        gateway.stop()
        async with asyncio.timeout(30):
            await task


def config(broker_url: str, tmp_path: Path, interval: float = 0.5) -> Config:
    return parse_config(f"""
site = "test-site"
gateway = "gw"
[broker]
url = "{broker_url}"
[delivery]
outbox = "{tmp_path / 'outbox.db'}"
profile = "senml"
[ble]
counters = "{tmp_path / 'ble.sqlite'}"
[[ble.node]]
id = "pit-7"
address = "{ADDRESS}"
key = "{KEY.hex()}"
role = "meter"
interval = {interval}
""")


def readings_of(msg: Any) -> dict[str, Any]:
    """name -> value of one SenML data message."""
    records = senml.resolve(senml.from_labels(cbor2.loads(bytes(msg.payload))))
    return {r["n"].split(":")[-1]: r.get("v", r.get("vb")) for r in records}


def test_meter_adverts_arrive_upstream_as_litres_and_bad_ones_are_refused(mosquitto, subscriber, tmp_path) -> None:
    """Pulses become litres upstream with seq = advert counter; a replay, a forgery and a re-ordered
    (older) advert are refused and counted; the node's birth names the ``meter-ble`` role."""
    radio = VirtualRadio()
    # The beacon sends a new reading only when told to (repeats of one advert are no sign of life): a long
    # interval keeps the node online between the test's steps
    # however slowly a loaded machine runs them (going offline is the next test's subject).
    gateway = Gateway(config(mosquitto.url, tmp_path, interval=10.0), ble_backend=scanner_backend(radio))
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.root + "/#")
    data_topic = gateway.topics.data_prefix + "pit-7"

    async def main() -> None:
        node = Beacon(radio, ADDRESS, KEY, "meter", interval_ms=20)
        await node.start()
        async with running(gateway):
            receiver = gateway.ble
            assert receiver is not None
            first = await node.reading([3300, 120])
            msg = await sub.wait(lambda m: m.topic == data_topic)
            assert readings_of(msg) == {"seq": 1, "volume": 120, "status": 0, "battery": 3.3}
            await node.reading([3300, 125], meter.STATUS_LEAK)
            msg = await sub.wait(lambda m: m.topic == data_topic and readings_of(m)["seq"] == 2)
            assert readings_of(msg)["volume"] == 125 and readings_of(msg)["status"] == meter.STATUS_LEAK
            await node.advertise_raw(first)  # replayed
            await until(lambda: receiver.refused[("pit-7", "replayed")] >= 1)
            forged = bytearray(first)
            forged[2] ^= 0x10
            await node.advertise_raw(bytes(forged))
            await until(lambda: receiver.refused[("pit-7", "forged")] >= 1)
            node.counter = 0  # a re-ordered advert: counter 1 again, other contents
            await node.reading([3300, 999])
            await until(lambda: receiver.refused[("pit-7", "replayed")] >= 2)
            await node.reading([3300, 999])  # counter 2: seen too
            await until(lambda: receiver.refused[("pit-7", "replayed")] >= 3)
            node.counter = 2
            await node.reading([3300, 130])
            msg = await sub.wait(lambda m: m.topic == data_topic and readings_of(m)["seq"] == 3)
            assert readings_of(msg)["volume"] == 130
            late = subscriber(mosquitto.host, mosquitto.port, gateway.topics.node_birth("pit-7"))
            birth = cbor2.loads((await late.wait(lambda m: True)).payload)  # retained
            assert birth["role"] == "meter-ble"
        assert gateway.stats.nodes["pit-7"].online is True
        assert dict(receiver.refused) == {("pit-7", "replayed"): 3, ("pit-7", "forged"): 1}
        assert receiver.counts["accepted"] == 3

    asyncio.run(main())


def test_a_node_out_of_range_goes_offline_and_comes_back(mosquitto, subscriber, tmp_path) -> None:
    """Out of range for 3 advert intervals: retained state offline; back in range: online again."""
    radio = VirtualRadio()
    gateway = Gateway(config(mosquitto.url, tmp_path, interval=0.2), ble_backend=scanner_backend(radio))
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.node_state("pit-7"))

    def online(m: Any) -> bool:
        return bool(cbor2.loads(m.payload)["online"])

    async def main() -> None:
        node = Beacon(radio, ADDRESS, KEY, "meter", interval_ms=20)
        await node.start()
        async with running(gateway):
            await node.reading([3300, 1])
            await sub.wait(online)
            radio.link.out_of_range.add(ADDRESS)
            msg = await sub.wait(lambda m: not online(m))
            assert "no advert for" in cbor2.loads(msg.payload)["error"]
            radio.link.restore(ADDRESS)
            await node.reading([3300, 2])
            await sub.wait(online)

    asyncio.run(main())
