"""Many commands on one GATT connection (an update's chunks), within the sender's connection budget.

Real parts: bleak's client API on the Bumble backend, Bumble's GATT on the virtual radio, the counters'
SQLite file; the node's side is the Python GATT service of tools/sim/ble_gatt_node.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_session import GattSession
from gateway.transport.ble_window import ReplayWindows
from protocols import ble_gatt
from tools.sim.ble_gatt_node import GattNode
from tools.sim.bleak_bumble import client_backend
from tools.sim.radio import VirtualRadio

KEY = bytes(range(16))
NODE = BleNodeConfig(id="pit-9", address="D0:5E:00:00:00:09", key=KEY.hex(), role="meter", interval=10)
OTHER = BleNodeConfig(id="pit-10", address="D0:5E:00:00:00:0A", key=KEY.hex(), role="meter", interval=10)


def test_a_session_keeps_one_connection_and_holds_a_place_in_the_budget(tmp_path: Path) -> None:
    """Ten commands on one connection, counters rising; meanwhile a command to another node waits for the
    budget's only place, and goes once the session gives its connection back."""

    async def main() -> None:
        radio = VirtualRadio()
        node = GattNode(radio, NODE.address, KEY, {0: 1000})
        other = GattNode(radio, OTHER.address, KEY, {0: 7})
        await node.start()
        await other.start()
        windows = ReplayWindows(tmp_path / "ble.sqlite")
        sender = GattSender(windows, backend=client_backend(radio), budget=1, attempt_timeout=10)
        async with GattSession(sender, NODE) as session:
            for value in range(10):
                assert await session.send(ble_gatt.OP_WRITE, ble_gatt.write_body(0, [value])) == (0, b"")
            waiting = asyncio.create_task(sender.send(OTHER, ble_gatt.OP_READ, b"\x00\x00\x01"))
            await asyncio.sleep(0.5)  # long enough for a connection on the idle virtual radio
            assert not waiting.done(), "a second connection was opened beside the session's"
            assert session.connections == 1 and sender.connection_slot().locked()
            await session.release()
            assert await waiting == (0, (7).to_bytes(2, "little"))
        assert [c[0] for c in node.commands] == list(range(1, 11)) and node.registers[0] == 9
        windows.close()

    asyncio.run(main())
