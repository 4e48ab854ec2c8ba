"""Operator commands to a BLE node, end to end: a signed command in over Mosquitto, GATT to the real firmware.

The meter firmware runs in the MicroPython unix port (heap as the BLE street test); the whole gateway
(its scanner and its GATT client on the virtual radio's bleak backends) runs in this process; paho
publishes the operator's signed envelope and reads the result; an independent pymodbus master on the
node's RS-485 bus checks the setting the command changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.publish as paho_publish
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from street_kit import Master, control, prepare
from waiting import until

from gateway.service.config import parse_config
from gateway.service.daemon import Gateway
from gateway.transport.ble_alarms import AlarmAcknowledger
from protocols.roles import meter
from tools.keys import key_entry, public_text
from tools.operator import Signer
from tools.sim.bleak_bumble import client_backend, scanner_backend
from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

OPERATOR = Signer(Ed25519PrivateKey.generate(), "ops")
KEY = "2b7e151628aed2a6abf7158809cf4f3c"
ADDRESS = "D0:5E:00:00:00:41"
HEAP = "128K"  # the ESP32 budget; the street adds the ROMFS image's size (flash on a chip)


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    task = asyncio.create_task(gateway.run())
    try:
        await until(lambda: gateway.stats.broker_connected or task.done())
        assert not task.done(), task
        yield gateway
    finally:
        gateway.stop()
        async with asyncio.timeout(30):
            await task


def ble_diag(street: VirtualStreet) -> dict[str, Any]:
    try:
        return dict(json.loads((street.node(1).flash / "diag.json").read_text()).get("ble", {}))
    except (OSError, ValueError):
        return {}


def test_a_signed_command_reaches_a_ble_node_and_its_alarm_is_acknowledged(mosquitto, subscriber,
                                                                             tmp_path: Path) -> None:
    """set_config on a BLE meter: done, confirmed by a GATT read-back, the node's register changed (Modbus
    sees it); a value out of the setting's range is rejected before anything is sent; the tamper alarm
    the node raises is acknowledged by the gateway over GATT, and the node stops repeating it."""
    state = tmp_path / "state"
    state.mkdir()
    config = parse_config(f"""
site = "test-site"
gateway = "gw"
[broker]
url = "{mosquitto.url}"
[delivery]
outbox = "{tmp_path / 'outbox.db'}"
[http]
enabled = false
[commands]
replay_db = "{state / 'replay.sqlite'}"
audit_log = "{state / 'audit.jsonl'}"
{key_entry("ops", public_text(OPERATOR.key), ["*"], ["*"])}
[ble]
counters = "{tmp_path / 'ble.sqlite'}"
[[ble.node]]
id = "pit-1"
address = "{ADDRESS}"
key = "{KEY}"
role = "meter"
interval = 0.3
""")
    radio = VirtualRadio()
    host = RadioHost(radio)
    gateway = Gateway(config, ble_backend=scanner_backend(radio), ble_client_backend=client_backend(radio))
    results = subscriber(mosquitto.host, mosquitto.port, gateway.topics.result)
    street = VirtualStreet(tmp_path / "street", nodes=1, role="meter", heapsize=HEAP)
    prepare(street, 1, {"unit": 1, "role": "meter", "baud": 19200, "sample_ms": 100}, {"water": {"mode": "off"}})
    (street.node(1).flash / "ble.json").write_text(json.dumps(
        {"key": KEY, "interval_ms": 300, "burst_ms": 100, "alarm_repeat_ms": 300, "alarm_timeout_ms": 600000}))
    seen: dict[str, Any] = {}

    def command(cid: str, params: dict[str, Any]) -> dict[str, Any]:
        paho_publish.single(gateway.topics.cmd, OPERATOR.envelope("pit-1", "set_config", params, command_id=cid),
                            qos=1, hostname=mosquitto.host, port=mosquitto.port)
        return seen.setdefault(cid, {})

    async def result(cid: str) -> dict[str, Any]:
        msg = await results.wait(lambda m: cbor2.loads(m.payload)["id"] == cid, within=60)
        return dict(cbor2.loads(msg.payload))

    async def main() -> None:
        port = await host.start()
        street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": ADDRESS, "diag_ms": 300}
        try:
            async with running(gateway):
                await asyncio.to_thread(street.start)
                await until(lambda: gateway.stats.nodes["pit-1"].online)
                command("c-1", {"burst_flow": 2.5})
                seen["c-1"] = await result("c-1")
                command("c-2", {"battery_low": 0.1})  # below the setting's 2.0 V: refused by the plan
                seen["c-2"] = await result("c-2")
                master = Master(street, meter.MAP)
                try:
                    seen["holding"] = await asyncio.to_thread(master.holding, 1)
                finally:
                    master.close()
                control(street, 1, water={"mode": "off", "magnet": True})
                acknowledger = gateway.ble.on_alarm if gateway.ble is not None else None
                assert isinstance(acknowledger, AlarmAcknowledger)
                await until(lambda: acknowledger.acknowledged["pit-1"])
                acked = await until(lambda: (d := ble_diag(street)).get("alarm_acked") and d)
                await until(lambda: ble_diag(street).get("adverts", 0) >= acked["adverts"] + 4)
                seen["after"] = ble_diag(street)
                seen["acked"] = acked
        finally:
            await asyncio.to_thread(street.stop)
            await host.stop()

    asyncio.run(main())
    done = seen["c-1"]
    assert (done["status"], done["confirmed"], done["unconfirmed"]) == ("done", ["pit-1"], []), done
    assert seen["holding"]["burst_flow"] == 2500  # raw: 2.5 l/s at scale -3
    assert seen["c-2"]["status"] == "rejected" and seen["c-2"]["reason"] == "bad_parameters", seen["c-2"]
    assert seen["holding"]["battery_low"] != 100
    assert seen["after"]["alarm_adverts"] == seen["acked"]["alarm_adverts"], "no alarm advert after the ack"
    assert seen["after"]["gatt_accepted"] >= 3  # the write, its read-back, the acknowledgement
    assert seen["after"]["gatt_forged"] == 0 and seen["after"]["gatt_replayed"] == 0
