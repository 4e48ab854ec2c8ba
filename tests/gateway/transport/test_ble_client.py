"""Commands to BLE nodes over GATT on the virtual radio: sealed, answered, retried once, never stuck.

Real parts: bleak's public client API on the Bumble backend, Bumble's GATT over its virtual controllers,
the SQLite file of the counters. The node's side is the Python GATT service of tools/sim/ble_gatt_node.py
(which can vanish mid-write on cue); the firmware's own service is in test_ble_gatt_firmware.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattError, GattSender
from gateway.transport.ble_window import ReplayWindows
from protocols import ble_gatt
from tools.sim.ble_gatt_node import GattNode
from tools.sim.bleak_bumble import client_backend
from tools.sim.radio import VirtualRadio

KEY = bytes(range(16))
NODE = BleNodeConfig(id="pit-9", address="D0:5E:00:00:00:09", key=KEY.hex(), role="meter", interval=10)


def test_a_write_is_applied_and_its_result_comes_back(tmp_path: Path) -> None:
    """A setting written over GATT lands in the node's registers; the sealed result says done; a read
    gives it back; the counters never repeat, also after the gateway restarts."""

    async def main() -> None:
        radio = VirtualRadio()
        node = GattNode(radio, NODE.address, KEY, {0: 1000})
        await node.start()
        windows = ReplayWindows(tmp_path / "ble.sqlite")
        sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=10)
        assert await sender.send(NODE, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [250])) == (0, b"")
        assert node.registers[0] == 250
        assert await sender.send(NODE, ble_gatt.OP_READ, b"\x00\x00\x01") == (0, (250).to_bytes(2, "little"))
        windows.close()
        windows = ReplayWindows(tmp_path / "ble.sqlite")  # a restarted gateway
        sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=10)
        assert await sender.send(NODE, ble_gatt.OP_ACK_ALARM) == (0, b"")
        assert [c[0] for c in node.commands] == [1, 2, 3] and node.acked == 1 and node.refused == []
        windows.close()

    asyncio.run(main())


def test_a_forged_command_is_refused_by_the_node(tmp_path: Path) -> None:
    """A command sealed with another key is dropped by the node; the sender gets no result: one retry, then
    a GattError naming the node; nothing was applied (a write that reached the node was refused)."""

    async def main() -> None:
        radio = VirtualRadio()
        node = GattNode(radio, NODE.address, bytes(16), {0: 1000})  # the node holds another key
        await node.start()
        windows = ReplayWindows(tmp_path / "ble.sqlite")
        sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=1)
        with pytest.raises(GattError, match=r"BLE node pit-9: TimeoutError \(after 2 attempt\(s\)\)"):
            await sender.send(NODE, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [1]))
        assert node.registers == {0: 1000} and node.commands == []
        assert sender.attempts == 2 and len(node.refused) <= 2
        windows.close()

    asyncio.run(main())


def test_a_node_that_vanishes_mid_write_costs_one_retry(tmp_path: Path) -> None:
    """The connection drops during the first write: that attempt times out, the retry (a new counter)
    succeeds; the scanner-side loop kept running all along."""

    async def main() -> None:
        radio = VirtualRadio()
        node = GattNode(radio, NODE.address, KEY, {0: 1000})
        await node.start()
        windows = ReplayWindows(tmp_path / "ble.sqlite")
        sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=3)
        ticks = 0

        async def loop_alive() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.05)

        alive = asyncio.create_task(loop_alive())
        node.vanish_on_next_write = True  # the first write arrives, then its connection loses everything
        status = await sender.send(NODE, ble_gatt.OP_WRITE, ble_gatt.write_body(0, [42]))
        alive.cancel()
        assert status == (0, b"")
        assert (sender.attempts, sender.failures) == (2, 1)
        assert node.registers[0] == 42 and [c[0] for c in node.commands] == [2]
        assert ticks > 1
        windows.close()

    asyncio.run(main())
