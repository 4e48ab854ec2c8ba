"""A battery BLE node (``config.json`` ``"bus": false``): no Modbus slave, reached over its radio alone.

The real meter firmware in the MicroPython unix port on the virtual radio, as in test_ble_gatt_firmware.py:
with no bus configured it never answers on its RS-485 drop, yet advertises and serves the gateway's sealed
GATT writes, reads and reboot command; configured without a bus but with no radio to be reached by, it
opens its bus after all.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from pymodbus.client import ModbusSerialClient
from street_kit import prepare
from waiting import until

from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_window import ReplayWindows
from protocols import ble_gatt
from protocols.roles import meter
from protocols.roles.common import CMD_REBOOT
from tools.sim.bleak_bumble import client_backend
from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

KEY = "2b7e151628aed2a6abf7158809cf4f3c"
ADDRESS = "D0:5E:00:00:00:32"
NODE = BleNodeConfig(id="pit-32", address=ADDRESS, key=KEY, role="meter", interval=0.3)
HEAP = "128K"
BURST_FLOW = next(r.address for r in meter.MAP.registers if r.name == "burst_flow")
COMMAND = next(r.address for r in meter.MAP.registers if r.name == "command")


def diag(street: VirtualStreet) -> dict[str, Any]:
    """The node's diag.json ({} before its first)."""
    try:
        data: dict[str, Any] = json.loads((street.node(1).flash / "diag.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def bus_answers(street: VirtualStreet) -> bool:
    """Whether unit 1 answers a read of its holding registers on the bus (one try, one second)."""
    client = ModbusSerialClient(street.master_device, baudrate=street.baud, timeout=1.0, retries=0)
    assert client.connect()
    try:
        return not client.read_holding_registers(0, count=2, device_id=1).isError()
    except Exception:  # no answer: pymodbus raises ModbusIOException
        return False
    finally:
        client.close()  # type: ignore[no-untyped-call]


def test_a_battery_meter_is_served_over_gatt_and_silent_on_the_bus(tmp_path: Path) -> None:
    """Adverts and GATT work (a write read back, a reboot answered before the node resets), the bus gets
    no answer and the node's diag.json counts no Modbus request."""
    radio = VirtualRadio()
    host = RadioHost(radio)
    street = VirtualStreet(tmp_path / "street", nodes=1, role="meter", heapsize=HEAP)
    prepare(street, 1, {"unit": 1, "role": "meter", "bus": False, "sample_ms": 100}, {"water": {"mode": "off"}})
    (street.node(1).flash / "ble.json").write_text(json.dumps({"key": KEY, "interval_ms": 300}))
    windows = ReplayWindows(tmp_path / "ble.sqlite")
    sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=10)
    seen: dict[str, Any] = {}

    async def main() -> None:
        port = await host.start()
        street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": ADDRESS, "diag_ms": 300}
        try:
            await asyncio.to_thread(street.start)
            await until(lambda: diag(street).get("ble", {}).get("adverts"))
            seen["bus"] = await asyncio.to_thread(bus_answers, street)
            assert await sender.send(NODE, ble_gatt.OP_WRITE, ble_gatt.write_body(BURST_FLOW, [1234])) == (0, b"")
            seen["read"] = await sender.send(NODE, ble_gatt.OP_READ, bytes([BURST_FLOW, 0, 1]))
            seen["reboot"] = await sender.send(NODE, ble_gatt.OP_WRITE, ble_gatt.write_body(COMMAND, [CMD_REBOOT]))
            await until(lambda: not street.node(1).alive())
            seen["diag"] = diag(street)
        finally:
            await asyncio.to_thread(street.stop)
            await host.stop()
            windows.close()

    asyncio.run(main())
    assert seen["bus"] is False
    assert seen["read"] == (0, (1234).to_bytes(2, "little"))
    assert seen["reboot"] == (0, b"")  # answered, then the reset
    assert seen["diag"]["requests"] == 0 and seen["diag"]["answered"] == 0
    assert seen["diag"]["ble"]["gatt_accepted"] >= 2


def test_a_node_without_bus_nor_radio_opens_its_bus_all_the_same(tmp_path: Path) -> None:
    """``"bus": false`` with no ``ble.json``: nothing else could reach it, so it serves the bus."""
    street = VirtualStreet(tmp_path / "street", nodes=1, role="meter", heapsize=HEAP)
    prepare(street, 1, {"unit": 1, "role": "meter", "bus": False}, {"water": {"mode": "off"}})
    with street:
        street.start()
        assert bus_answers(street)
