"""The BLE nodes' command bus and alarm acknowledgements, on the virtual radio against the Python GATT node.

Real parts: bleak's client API on the Bumble backend, Bumble's GATT, the SQLite counters. The firmware's own
service is exercised end to end in test_ble_gatt_firmware.py and tests/gateway/commands/test_ble_command_street.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from gateway.commands.node_plan import word_map
from gateway.commands.targets import command_targets
from gateway.contracts import INPUT
from gateway.errors import GatewayError
from gateway.service.config import parse_config
from gateway.transport.ble_alarms import AlarmAcknowledger
from gateway.transport.ble_bus import BLE_BUS, GattBus, GattRefusedError
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_window import ReplayWindows
from protocols.roles import meter
from tools.sim.ble_gatt_node import GattNode
from tools.sim.bleak_bumble import client_backend
from tools.sim.radio import VirtualRadio

KEY = bytes(range(16)).hex()
CONFIG = parse_config(f"""
site = "s"
gateway = "g"
[broker]
url = "mqtt://127.0.0.1:1"
[delivery]
outbox = ":memory:"
[[bus]]
name = "street"
device = "/dev/null"
[[node]]
id = "lamp-1"
bus = "street"
unit = 1
[ble]
counters = ":memory:"
[[ble.node]]
id = "pit-9"
address = "D0:5E:00:00:00:09"
key = "{KEY}"
role = "meter"
""")
NODE = CONFIG.ble.node[0]


def test_ble_nodes_are_command_targets_only_with_a_gatt_bus() -> None:
    """With a GATT bus a node target names the BLE node (on its own bus, unit 1, its role's table)."""
    with_ble = command_targets(CONFIG, ble=True)
    assert sorted(with_ble) == ["lamp-1", "pit-9"]
    pit = with_ble["pit-9"]
    assert (pit.bus, pit.unit, pit.role) == (BLE_BUS, 1, "meter")
    assert sorted(command_targets(CONFIG, ble=False)) == ["lamp-1"]


def test_writes_and_chunked_reads_over_gatt(tmp_path: Path) -> None:
    """A write lands in the node's registers; a read-back of 150 words takes two reads (100 + 50) and
    returns them in order; input registers and coils are refused without a connection."""

    async def main() -> None:
        radio = VirtualRadio()
        node = GattNode(radio, NODE.address, NODE.key_bytes, {a: 1000 + a for a in range(150)})
        await node.start()
        windows = ReplayWindows(tmp_path / "ble.sqlite")
        bus = GattBus(CONFIG.ble, GattSender(windows, backend=client_backend(radio)))
        await bus.write(1, 5, [7, 8])
        start, words = await bus.read_table(1, word_map(0, 150), 3)
        assert start == 0 and words[:4] == [1000, 1001, 1002, 1003] and words[5:7] == [7, 8]
        assert words[100:] == [1000 + a for a in range(100, 150)]
        assert [op for _, op, _ in node.commands] == [1, 3, 3]
        with pytest.raises(GatewayError, match="only holding registers"):
            await bus.read_table(1, meter.MAP, INPUT)
        with pytest.raises(GatewayError, match="no coils"):
            await bus.write_coils(1, 0, [1])
        with pytest.raises(GatewayError, match="no BLE node with command unit 2"):
            await bus.write(2, 0, [1])
        assert len(node.commands) == 3
        windows.close()

    asyncio.run(main())


def test_a_refused_command_raises_with_the_node_and_status(tmp_path: Path) -> None:
    """A gateway whose counters went back (an old copy of the file) is refused: GattRefusedError names
    the node and the replayed counter; the node changed nothing."""

    async def main() -> None:
        radio = VirtualRadio()
        node = GattNode(radio, NODE.address, NODE.key_bytes, {0: 1})
        await node.start()
        node.highest = 50
        windows = ReplayWindows(tmp_path / "ble.sqlite")
        bus = GattBus(CONFIG.ble, GattSender(windows, backend=client_backend(radio)))
        with pytest.raises(GattRefusedError, match=r"BLE node pit-9 refused a write of 1 register\(s\) at 0: "
                                                   r"status 128 \(replayed counter\)") as caught:
            await bus.write(1, 0, [2])
        assert caught.value.status == 0x80 and node.registers == {0: 1}
        windows.close()

    asyncio.run(main())


def test_alarm_acknowledgements_one_at_a_time_per_node(tmp_path: Path) -> None:
    """A burst of alarm adverts heard at once costs one acknowledgement; the node took it. A node with
    another key never answers: the failure is counted, and the gateway goes on."""

    async def main() -> None:
        radio = VirtualRadio()
        node = GattNode(radio, NODE.address, NODE.key_bytes)
        await node.start()
        windows = ReplayWindows(tmp_path / "ble.sqlite")
        acknowledger = AlarmAcknowledger(GattSender(windows, backend=client_backend(radio), attempt_timeout=5))
        for _ in range(5):
            acknowledger(NODE)
        await acknowledger.settled()
        assert acknowledger.acknowledged["pit-9"] == 1
        assert node.acked == 1 and acknowledger.failed["pit-9"] == 0
        node.frames = GattNode(radio, "D0:5E:00:00:00:0A", bytes(16)).frames  # the node now holds another key
        quick = AlarmAcknowledger(GattSender(windows, backend=client_backend(radio), attempt_timeout=0.5,
                                             retries=0))
        quick(NODE)
        await quick.settled()
        assert quick.failed["pit-9"] == 1
        assert node.acked == 1 and quick.acknowledged["pit-9"] == 0
        await quick.close()
        await acknowledger.close()
        windows.close()

    asyncio.run(main())


def test_a_reload_keeps_the_ble_nodes_the_gateway_started_with() -> None:
    """[ble] is read at start: a reload that reorders the BLE nodes (their command units) is reported and not
    applied, so a command can never reach a node through another node's unit."""
    from gateway.service.daemon import Gateway

    second = CONFIG.ble.node[0].__class__(id="pit-10", address="D0:5E:00:00:00:0A", key=KEY, role="meter")
    reordered = msgspec.structs.replace(CONFIG, ble=msgspec.structs.replace(CONFIG.ble, node=[second, NODE]))
    gateway = Gateway(CONFIG)
    notes = asyncio.run(gateway.reload(reordered))
    assert "ble changed: takes effect after a restart" in notes
    assert gateway.config.ble == CONFIG.ble
    assert command_targets(gateway.config, ble=True)["pit-9"].unit == 1
