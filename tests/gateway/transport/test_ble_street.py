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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
from street_kit import Master, control, prepare, world
from waiting import until

from gateway.service.config import Config, parse_config
from gateway.service.daemon import Gateway
from protocols import senml
from protocols.roles import env, meter
from tools.sim.bleak_bumble import client_backend, scanner_backend
from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

KEY = "2b7e151628aed2a6abf7158809cf4f3c"
ADDRESS = "D0:5E:00:00:00:01"
ENV_KEY = "000102030405060708090a0b0c0d0e0f"
ENV_ADDRESS = "D0:5E:00:00:00:02"
WEATHER = {"temperature_c": 21.37, "humidity": 48.25, "pressure_pa": 99876.5, "pm25": 12.3, "pm10": 20.4,
           "noise_db": 61.5}
INTERVAL_MS = 300
HEAP = "128K"  # the ESP32 budget; the street adds the ROMFS image's size (flash on a chip)


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
[[ble.node]]
id = "pole-2"
address = "{ENV_ADDRESS}"
key = "{ENV_KEY}"
role = "env"
interval = {INTERVAL_MS / 1000}
""")


def readings_of(msg: Any) -> dict[str, Any]:
    records = senml.resolve(senml.from_labels(cbor2.loads(bytes(msg.payload))))
    return {r["n"].split(":")[-1]: r.get("v") for r in records}


def test_meter_firmware_pulses_arrive_upstream_as_litres_and_no_alarm_is_lost(mosquitto, subscriber,
                                                                              tmp_path) -> None:
    """Water flows: upstream volume follows the meter's litres; tamper raised and cleared three times
    with 10 % of the adverts lost: every change reaches upstream. The environment node beside it: its
    weather arrives in the advert's resolution."""
    radio = VirtualRadio(loss=0.10, seed=12)
    host = RadioHost(radio)
    gateway = Gateway(gateway_config(mosquitto.url, tmp_path), ble_backend=scanner_backend(radio),
                      ble_client_backend=client_backend(radio))  # its alarms are acknowledged over GATT
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.data_prefix + "pit-1")
    env_sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.data_prefix + "pole-2")
    street = VirtualStreet(tmp_path / "street", nodes=2, role="meter", roles={2: "env"}, heapsize=HEAP)
    prepare(street, 1, {"unit": 1, "role": "meter", "baud": 19200, "sample_ms": 100}, {"water": {"mode": "off"}})
    prepare(street, 2, {"unit": 2, "role": "env", "baud": 19200, "sample_ms": 250}, {"weather": WEATHER})
    for unit, key in ((1, KEY), (2, ENV_KEY)):
        (street.node(unit).flash / "ble.json").write_text(json.dumps(
            {"key": key, "interval_ms": INTERVAL_MS, "burst_ms": 150, "alarm_repeat_ms": 600,
             "alarm_timeout_ms": 3000}))
    weather: list[dict[str, Any]] = []
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
        street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": ADDRESS, "diag_ms": 1000}
        street.hardware[2] = {"radio": f"127.0.0.1:{port}", "ble_address": ENV_ADDRESS, "diag_ms": 1000}
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
                msg = await env_sub.wait(lambda m: readings_of(m)["pm10"] > 0, within=90)
                weather.append(readings_of(msg))
                master = Master(street, env.MAP)  # the node's own registers, over its Modbus bus
                try:
                    weather.append(await asyncio.to_thread(master.inputs, 2))
                finally:
                    master.close()
        finally:
            await asyncio.to_thread(street.stop)
            await host.stop()

    asyncio.run(main())
    for unit in (1, 2):  # the live heap of each BLE role (docs/performance.md), with its GATT service
        diag = json.loads((street.node(unit).flash / "diag.json").read_text())
        print(f"unit {unit}: heap_live {diag['heap_live']} B, GATT connections {diag['ble']['gatt_connections']}")
    assert volumes == sorted(volumes), "the volume never goes backwards"
    assert statuses[:1] == [0] and statuses[1:] == [meter.STATUS_TAMPER, 0] * 3
    assert radio.link.counts["lost"] > 0
    receiver = gateway.ble
    assert receiver is not None and not receiver.refused
    # the node's registers (raw) in the advert's resolution: whole-percent humidity, whole pascals,
    # whole micrograms (the weather is fixed, so the registers still hold what the advert carried)
    upstream, registers = weather
    assert upstream == {"seq": upstream["seq"], "temperature": registers["temperature"] / 100,
                        "humidity": registers["humidity"] // 100, "pressure": registers["pressure"] // 10,
                        "pm25": registers["pm25"] // 10, "pm10": registers["pm10"] // 10, "status": 0}
    assert (upstream["pm25"], upstream["pm10"]) == (12, 20)
