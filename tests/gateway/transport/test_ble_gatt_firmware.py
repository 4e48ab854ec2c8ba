"""The gateway's GATT client against the real meter firmware on the virtual radio.

The node runs in the MicroPython unix port on ``boards/sim`` (heap :data:`HEAP`, as the BLE street test);
its ``bluetooth`` calls (``gatts_register_services``, ``gatts_notify``, the IRQ events) reach a Bumble
device through the radio host; the gateway's :class:`GattSender` speaks bleak on the Bumble backend.
An independent pymodbus master on the node's RS-485 bus checks what the GATT writes changed.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from street_kit import Master, control, prepare
from waiting import until

from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattError, GattSender
from gateway.transport.ble_window import ReplayWindows
from protocols import ble_gatt
from protocols.roles import meter
from tools.sim.bleak_bumble import client_backend
from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

KEY = "2b7e151628aed2a6abf7158809cf4f3c"
ADDRESS = "D0:5E:00:00:00:31"
NODE = BleNodeConfig(id="pit-31", address=ADDRESS, key=KEY, role="meter", interval=0.3)
HEAP = "128K"  # the ESP32 budget; the street adds the ROMFS image's size (flash on a chip)
BURST_FLOW = next(r.address for r in meter.MAP.registers if r.name == "burst_flow")
BATTERY_LOW = next(r.address for r in meter.MAP.registers if r.name == "battery_low")


def ble_diag(street: VirtualStreet) -> dict[str, Any]:
    """The BLE part of the node's diag.json ({} before its first)."""
    try:
        diag = json.loads((street.node(1).flash / "diag.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(diag.get("ble", {}), heap_live=diag["heap_live"])


def test_gatt_commands_reach_the_meter_firmware(tmp_path: Path) -> None:
    """A sealed write changes a meter threshold (the Modbus master sees it), a read returns it, an
    out-of-range write is refused with the Modbus code; a replayed counter and a forged command are
    refused and counted by the node; an acknowledgement ends the alarm's repeats before their timeout."""
    radio = VirtualRadio()
    host = RadioHost(radio)
    street = VirtualStreet(tmp_path / "street", nodes=1, role="meter", heapsize=HEAP)
    prepare(street, 1, {"unit": 1, "role": "meter", "baud": 19200, "sample_ms": 100}, {"water": {"mode": "off"}})
    (street.node(1).flash / "ble.json").write_text(json.dumps(
        {"key": KEY, "interval_ms": 300, "burst_ms": 100, "alarm_repeat_ms": 300, "alarm_timeout_ms": 600000}))
    windows = ReplayWindows(tmp_path / "ble.sqlite")
    sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=10)
    seen: dict[str, Any] = {}

    async def main() -> None:
        port = await host.start()
        street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": ADDRESS, "diag_ms": 300}
        try:
            await asyncio.to_thread(street.start)
            await until(lambda: ble_diag(street).get("adverts"))
            # a setting written over GATT, read back over GATT and over Modbus
            assert await sender.send(NODE, ble_gatt.OP_WRITE, ble_gatt.write_body(BURST_FLOW, [1234])) == (0, b"")
            assert await sender.send(NODE, ble_gatt.OP_READ, bytes([BURST_FLOW, 0, 1])) == (
                0, (1234).to_bytes(2, "little"))
            # out of its range (2000..4200 mV): the bank's Modbus code, nothing stored
            assert await sender.send(NODE, ble_gatt.OP_WRITE, ble_gatt.write_body(BATTERY_LOW, [100])) == (3, b"")
            master = Master(street, meter.MAP)
            try:
                seen["holding"] = await asyncio.to_thread(master.holding, 1)
            finally:
                master.close()
            # a gateway whose counters start again from 1 (an old copy of the file): replays, refused
            stale = ReplayWindows(tmp_path / "stale.sqlite")
            replay = GattSender(stale, backend=client_backend(radio), attempt_timeout=10)
            assert await replay.send(NODE, ble_gatt.OP_WRITE, ble_gatt.write_body(BURST_FLOW, [1])) == (
                ble_gatt.STATUS_REPLAY, b"")
            stale.close()
            # sealed with another key: the node answers nothing (one attempt, long enough for a loaded machine
            # to connect and write: the node must see it to count it)
            forger = GattSender(windows, backend=client_backend(radio), attempt_timeout=4, retries=0)
            with pytest.raises(GattError, match=r"BLE node pit-31: TimeoutError \(after 1 attempt"):
                await forger.send(msgspec.structs.replace(NODE, key="00" * 16), ble_gatt.OP_WRITE,
                                  ble_gatt.write_body(BURST_FLOW, [2]))
            # the alarm repeats until the gateway acknowledges it
            control(street, 1, water={"mode": "off", "magnet": True})
            await until(lambda: ble_diag(street).get("alarm_adverts", 0) >= 3)
            assert await sender.send(NODE, ble_gatt.OP_ACK_ALARM) == (0, b"")
            acked = await until(lambda: (d := ble_diag(street)).get("alarm_acked") and d)
            await until(lambda: ble_diag(street).get("adverts", 0) >= acked["adverts"] + 4)
            seen["after_ack"] = ble_diag(street)
            seen["acked"] = acked
        finally:
            await asyncio.to_thread(street.stop)
            await host.stop()
            windows.close()

    asyncio.run(main())
    assert seen["holding"]["burst_flow"] == 1234
    assert seen["holding"]["battery_low"] != 100
    after = seen["after_ack"]
    assert after["alarm_adverts"] == seen["acked"]["alarm_adverts"], "no alarm advert after the acknowledgement"
    assert after["gatt_accepted"] == 4  # write, read, refused write (a Modbus code), acknowledgement
    assert after["gatt_replayed"] == 1
    assert after["gatt_forged"] == 1
    print("meter with BLE and GATT, heap_live:", after["heap_live"])
