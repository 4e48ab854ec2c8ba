"""Group, bus and ``all`` targets reach BLE nodes: one GATT connection each, within the budget, a result per node.

Real parts: the command router and its executor, the GATT bus and sender with bleak's client API on the
virtual radio's Bumble backend, Bumble's GATT, Python GATT nodes (tools/sim/ble_gatt_node.py), SQLite counters.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.parse import CommandRejected, parse_target
from gateway.commands.router import CommandRouter
from gateway.commands.targets import command_targets, resolve_target
from gateway.service.config import ConfigError, parse_config
from gateway.service.stats import GatewayStats
from gateway.transport.ble_bus import GattBus
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_window import ReplayWindows
from protocols.roles import meter
from tools.keys import key_entry, public_text
from tools.operator import Signer, build_command
from tools.sim.ble_gatt_node import GattNode
from tools.sim.bleak_bumble import client_backend
from tools.sim.radio import VirtualRadio

OPS = Signer(Ed25519PrivateKey.generate(), "ops")
PITS = Signer(Ed25519PrivateKey.generate(), "pits")  # may command bus:ble only
NOW = 1_800_000_000.0
BURST_FLOW = meter.MAP["burst_flow"].address


def config_text(tmp_path: Path, *, bus_name: str = "street") -> str:
    nodes = "".join(f'[[ble.node]]\nid = "pit-{i}"\naddress = "D0:5E:00:00:00:0{i}"\nkey = "{bytes([i] * 16).hex()}"\n'
                    'role = "meter"\n' for i in (1, 2, 3))
    return f"""
site = "s"
gateway = "g"
[broker]
url = "mqtt://127.0.0.1:1"
[[bus]]
name = "{bus_name}"
device = "/dev/null"
[[node]]
id = "lamp-1"
bus = "{bus_name}"
unit = 1
[groups]
pits = ["pit-1", "pit-2"]
[commands]
replay_db = "{tmp_path / 'replay.sqlite'}"
audit_log = "{tmp_path / 'audit.jsonl'}"
{key_entry("ops", public_text(OPS.key), ["*"], ["*"])}
{key_entry("pits", public_text(PITS.key), ["set_config"], ["bus:ble"])}
[ble]
counters = "{tmp_path / 'ble.sqlite'}"
{nodes}"""


def test_groups_buses_and_all_name_ble_nodes_in_configuration_order(tmp_path: Path) -> None:
    config = parse_config(config_text(tmp_path))
    nodes = command_targets(config, ble=True)

    def ids(text: str) -> list[str]:
        return [n.id for n in resolve_target(config, nodes, parse_target(text))]

    assert ids("group:pits") == ["pit-1", "pit-2"]
    assert ids("bus:ble") == ["pit-1", "pit-2", "pit-3"]
    assert ids("bus:street") == ["lamp-1"]
    assert ids("all") == ["lamp-1", "pit-1", "pit-2", "pit-3"]
    without = command_targets(config, ble=False)  # no GATT bus: BLE nodes are no targets at all
    assert [n.id for n in resolve_target(config, without, parse_target("all"))] == ["lamp-1"]
    with pytest.raises(CommandRejected, match="no bus 'ble'"):
        resolve_target(config, without, parse_target("bus:ble"))


def test_a_modbus_bus_may_not_be_called_ble_beside_ble_nodes(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bus\[0\].name: 'ble' names the BLE nodes \(bus:ble\)"):
        parse_config(config_text(tmp_path, bus_name="ble"))


class CountingSender(GattSender):
    """The gateway's sender, counting the GATT connections open at once (each attempt is one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.open = self.most_open = 0

    async def _attempt(self, *args: Any) -> tuple[int, bytes]:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            return await super()._attempt(*args)
        finally:
            self.open -= 1


def test_bus_group_and_all_commands_reach_each_ble_node_with_a_result_per_node(tmp_path: Path) -> None:
    """``bus:ble``: each BLE node written and read back over its own connections, never more open than the
    budget; the one that refuses (its counter is ahead: an old copy of the gateway's file) fails alone,
    named with its refusal. ``group:pits`` is done on its two members only; a key scoped to ``bus:ble``
    may command them; ``all`` on BLE nodes and the Modbus lamp needs a key for all."""
    config = parse_config(config_text(tmp_path))
    results: list[dict[str, Any]] = []

    def command(cid: str, target: str, flow: float, signer: Signer = OPS) -> bytes:
        return signer.sign(build_command(target, "set_config", {"burst_flow": flow}, cid, now=NOW))

    async def main() -> tuple[list[GattNode], CountingSender]:
        radio = VirtualRadio()
        nodes = [GattNode(radio, n.address, n.key_bytes, {BURST_FLOW: 1000}) for n in config.ble.node]
        for node in nodes:
            await node.start()
        nodes[2].highest = 10**6
        windows = ReplayWindows(config.ble.counters)
        sender = CountingSender(windows, backend=client_backend(radio), budget=1, retries=0)
        router = CommandRouter(config, {}, GatewayStats(), lambda p: results.append(cbor2.loads(p)),
                               ble_bus=GattBus(config.ble, sender), clock=lambda: NOW + 0.5)
        try:
            await router.handle(command("c-bus", "bus:ble", 2.5))
            await router.handle(command("c-group", "group:pits", 3.0, PITS))
            await router.handle(command("c-all", "all", 3.5, PITS))
        finally:
            router.close()
            windows.close()
        return nodes, sender

    nodes, sender = asyncio.run(main())
    by_id = {r["id"]: r for r in results}
    bus = by_id["c-bus"]
    assert (bus["status"], bus["confirmed"], bus["unconfirmed"]) == ("failed", ["pit-1", "pit-2"], ["pit-3"]), bus
    assert "pit-3: write failed: BLE node pit-3 refused" in bus["detail"]
    group = by_id["c-group"]
    assert (group["status"], group["confirmed"]) == ("done", ["pit-1", "pit-2"]), group
    everything = by_id["c-all"]
    assert (everything["status"], everything["reason"]) == ("rejected", "out_of_scope"), everything
    assert [n.registers[BURST_FLOW] for n in nodes] == [3000, 3000, 1000]
    assert sender.most_open == 1  # the budget: one connection at a time, three nodes
    # Per command and node, one write and its read-back, each its own connection.
    assert [[op for _, op, _ in n.commands] for n in nodes[:2]] == [[1, 3, 1, 3]] * 2
