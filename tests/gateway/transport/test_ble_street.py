"""The real meter firmware advertising on the virtual radio, the real gateway listening, Mosquitto upstream.

The node runs in the MicroPython unix port on ``boards/sim``, at :data:`HEAP` (the meter with
its BLE part does not fit 128K on the 64-bit port yet: see docs/ble.md); its
``bluetooth`` calls reach a Bumble device through the radio host; the gateway
(in this process) scans with bleak on the Bumble backend; paho reads what
Mosquitto carries. The radio loses 10 % of the adverts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import cbor2
from street_kit import control, prepare, world

from gateway.service.config import Config, parse_config
from gateway.service.daemon import Gateway
from protocols import senml
from protocols.roles import meter
from tools.sim.bleak_bumble import scanner_backend
from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

KEY = "2b7e151628aed2a6abf7158809cf4f3c"
ADDRESS = "D0:5E:00:00:00:01"
INTERVAL_MS = 300
HEAP = "160K"


async def until(check: Callable[[], Any], within: float = 60.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)
    return value


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


def gateway_config(broker_url: str, tmp_path: Path) -> Config:
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
id = "pit-1"
address = "{ADDRESS}"
key = "{KEY}"
role = "meter"
interval = {INTERVAL_MS / 1000}
""")


def readings_of(msg: Any) -> dict[str, Any]:
    records = senml.resolve(senml.from_labels(cbor2.loads(bytes(msg.payload))))
    return {r["n"].split(":")[-1]: r.get("v") for r in records}


def test_meter_firmware_pulses_arrive_upstream_as_litres_and_no_alarm_is_lost(mosquitto, subscriber,
                                                                              tmp_path) -> None:
    """Water flows: upstream volume follows the meter's litres; tamper raised and cleared three times
    with 10 % of the adverts lost: every change reaches upstream."""
    radio = VirtualRadio(loss=0.10, seed=12)
    host = RadioHost(radio)
    gateway = Gateway(gateway_config(mosquitto.url, tmp_path), ble_backend=scanner_backend(radio))
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.data_prefix + "pit-1")
    street = VirtualStreet(tmp_path / "street", nodes=1, role="meter", heapsize=HEAP)
    prepare(street, 1, {"unit": 1, "role": "meter", "baud": 19200, "sample_ms": 100}, {"water": {"mode": "off"}})
    (street.node(1).flash / "ble.json").write_text(json.dumps(
        {"key": KEY, "interval_ms": INTERVAL_MS, "burst_ms": 150, "alarm_repeat_ms": 600, "alarm_timeout_ms": 3000}))
    statuses: list[int] = []
    volumes: list[int] = []

    def take(msg: Any) -> bool:
        values = readings_of(msg)
        volumes.append(int(values["volume"]))
        tamper = int(values["status"]) & meter.STATUS_TAMPER
        if not statuses or statuses[-1] != tamper:
            statuses.append(tamper)
        return True

    async def main() -> None:
        port = await host.start()
        street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": ADDRESS}
        try:
            async with running(gateway):
                await asyncio.to_thread(street.start)
                await sub.wait(take, within=60)
                control(street, 1, water={"mode": "constant", "lpm": 600.0})  # 10 l/s
                while not volumes or volumes[-1] < 20:
                    await sub.wait(take, within=60)
                control(street, 1, water={"mode": "off"})
                for _ in range(3):
                    for magnet in (True, False):
                        control(street, 1, water={"mode": "off", "magnet": magnet})
                        want = meter.STATUS_TAMPER if magnet else 0
                        while statuses[-1] != want:
                            await sub.wait(take, within=60)
                w = world(street, 1)["water"]
                assert volumes[-1] <= w["forward_l"] + 1  # litres saved by the node, never more than flowed
        finally:
            await asyncio.to_thread(street.stop)
            await host.stop()

    asyncio.run(main())
    assert volumes == sorted(volumes), "the volume never goes backwards"
    assert statuses[:1] == [0] and statuses[1:] == [meter.STATUS_TAMPER, 0] * 3
    assert radio.link.counts["lost"] > 0
    receiver = gateway.ble
    assert receiver is not None and not receiver.refused
