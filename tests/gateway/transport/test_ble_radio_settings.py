"""A BLE node's radio settings (advert interval, TX power, sleep) set over GATT on the real meter firmware.

The node runs in the MicroPython unix port on ``boards/sim``; its board hands the TX power to the virtual
radio, which makes it the RSSI and range of the node's adverts; a bleak scanner on the radio (the
gateway's own backend) hears them. The settings land in the node's ``ble.json`` and come back in the
result (the read-back); a value out of range is refused by the gateway and, sent anyway, by the node.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from street_kit import prepare
from waiting import until

from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_radio import RadioSettings, radio_settings
from gateway.transport.ble_window import ReplayWindows
from protocols import ble_gatt
from tools.sim.bleak_bumble import client_backend, scanner_backend
from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

KEY = "2b7e151628aed2a6abf7158809cf4f3c"
ADDRESS = "D0:5E:00:00:00:32"
NODE = BleNodeConfig(id="pit-32", address=ADDRESS, key=KEY, role="meter", interval=0.3)


def ble_diag(street: VirtualStreet) -> dict[str, Any]:
    try:
        return dict(json.loads((street.node(1).flash / "diag.json").read_text()).get("ble", {}))
    except (OSError, ValueError):
        return {}


def test_radio_settings_set_over_gatt_are_stored_applied_and_read_back(tmp_path: Path) -> None:
    """Read (300 ms, 0 dBm, awake); set (500 ms, -9 dBm, sleep): the result reads them back, ble.json holds
    them, the adverts arrive 9 dB weaker and, 80 dB away, no longer at all, and the node sleeps between
    adverts; a TX power the ESP32 has no level for is refused by the gateway and by the node."""
    radio = VirtualRadio()
    host = RadioHost(radio)
    street = VirtualStreet(tmp_path / "street", nodes=1, role="meter", heapsize="128K")
    prepare(street, 1, {"unit": 1, "role": "meter", "baud": 19200, "sample_ms": 100}, {"water": {"mode": "off"}})
    (street.node(1).flash / "ble.json").write_text(json.dumps({"key": KEY, "interval_ms": 300}))
    windows = ReplayWindows(tmp_path / "ble.sqlite")
    sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=10)
    rssi: list[tuple[float, int]] = []
    seen: dict[str, Any] = {}

    def heard(device: BLEDevice, advertisement: AdvertisementData) -> None:
        if device.address == ADDRESS:
            rssi.append((time.monotonic(), advertisement.rssi))

    async def main() -> None:
        port = await host.start()
        street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": ADDRESS, "diag_ms": 300}
        try:
            await asyncio.to_thread(street.start)
            async with BleakScanner(heard, backend=scanner_backend(radio)):
                await until(lambda: rssi)
                seen["before"] = await radio_settings(sender, NODE)
                seen["rssi_before"] = rssi[-1][1]
                seen["set"] = await radio_settings(sender, NODE, RadioSettings(500, -9, 1))
                changed = time.monotonic()
                await until(lambda: rssi[-1][0] > changed and rssi[-1][1] != seen["rssi_before"])
                seen["rssi_after"] = rssi[-1][1]
                with pytest.raises(ValueError, match=r"BLE node pit-32: tx_power_dbm 5 is not one of"):
                    await radio_settings(sender, NODE, RadioSettings(500, 5, 0))
                seen["refused"] = await sender.send(NODE, ble_gatt.OP_RADIO, bytes((0xF4, 0x01, 5, 0)))  # sent anyway
                seen["after_refusal"] = await radio_settings(sender, NODE)
                await until(lambda: ble_diag(street).get("slept_ms", 0) > 1000)
                seen["diag"] = ble_diag(street)
                radio.link.path_loss[ADDRESS] = 85.0  # farther away: -94 dBm at -9 dBm, under the -90 heard
                lost = radio.link.counts["too_weak"]
                await until(lambda: radio.link.counts["too_weak"] > lost)  # what was on its way has arrived
                count = len(rssi)
                await until(lambda: radio.link.counts["too_weak"] >= lost + 3)
                seen["heard_after_cut"] = rssi[count:]
        finally:
            await asyncio.to_thread(street.stop)
            await host.stop()
            windows.close()

    asyncio.run(main())
    assert seen["before"] == RadioSettings(300, 0, 0)
    assert seen["rssi_before"] == -50
    assert seen["set"] == RadioSettings(500, -9, 1)
    assert seen["rssi_after"] == -59
    assert seen["refused"][0] == 3  # illegal data value, as the register bank answers
    assert seen["after_refusal"] == RadioSettings(500, -9, 1)
    stored = json.loads((street.node(1).flash / "ble.json").read_text())
    assert (stored["interval_ms"], stored["tx_power_dbm"], stored["sleep"], stored["key"]) == (500, -9, True, KEY)
    diag = seen["diag"]
    assert (diag["interval_ms"], diag["tx_power_dbm"], diag["tx_power_applied"], diag["sleep"]) == (500, -9, True, 1)
    assert seen["heard_after_cut"] == []
