"""Operator commands to BLE nodes: the command executor's bus, carried over GATT.

The command router plans a command for a BLE node exactly as for a Modbus node
of the same role (the node's register bank is the same table): holding
registers to write, then the reads that confirm them. :class:`GattBus` is the
bus those plans run on: a write becomes a sealed ``OP_WRITE``, a read-back a
sealed ``OP_READ`` (:mod:`protocols.ble_gatt`), each through the
:class:`~gateway.transport.ble_client.GattSender` (connect only to send, within
its connection budget, one retry). So a BLE node's result is published like a
Modbus node's: ``done`` once read back, ``failed`` naming the node otherwise.

The router sees the BLE nodes through :func:`command_nodes`: on the bus
:data:`BLE_BUS` (a name no ``[[bus]]`` can have), unit = position in
``[[ble.node]]`` + 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.contracts import (
    BLE_GATT_OP_READ,
    BLE_GATT_OP_WRITE,
    HOLDING,
    RegisterMap,
    ble_gatt_write_body,
)
from gateway.errors import GatewayError
from gateway.service.config import NodeConfig
from gateway.service.config_ble import BleConfig, BleNodeConfig
from gateway.transport.ble_client import GattSender
from gateway.transport.priority_lock import URGENT

__all__ = ["BLE_BUS", "GattBus", "GattRefusedError", "command_nodes"]

BLE_BUS = "ble:gatt"
"""The bus name of BLE nodes in command plans (``:`` is not allowed in ``[[bus]]`` names)."""
_MAX_READ = 100  # registers one OP_READ returns (protocols.ble_gatt)
_CODES = {1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "device failure",
          0x80: "replayed counter", 0x81: "unknown op"}


class GattRefusedError(GatewayError):
    """A BLE node took a command and refused it: ``status`` is its result status (a Modbus exception code,
    or ``protocols.ble_gatt.STATUS_REPLAY`` / ``STATUS_BAD_OP``)."""

    def __init__(self, node: str, status: int, what: str) -> None:
        super().__init__(f"BLE node {node} refused {what}: status {status} ({_CODES.get(status, 'unknown')})")
        self.node = node
        self.status = status


def command_nodes(config: BleConfig) -> list[NodeConfig]:
    """The BLE nodes as command targets: on :data:`BLE_BUS`, unit = position + 1, their role's table."""
    return [NodeConfig(id=n.id, bus=BLE_BUS, unit=i + 1, role=n.role, interval=n.interval)
            for i, n in enumerate(config.node)]


class GattBus:
    """The :class:`~gateway.commands.executor.CommandBus` of the BLE nodes in ``config``, over ``sender``."""

    def __init__(self, config: BleConfig, sender: GattSender) -> None:
        self.sender = sender
        self._nodes = {i + 1: n for i, n in enumerate(config.node)}

    def _node(self, unit: int) -> BleNodeConfig:
        node = self._nodes.get(unit)
        if node is None:
            raise GatewayError(f"no BLE node with command unit {unit}")
        return node

    async def write(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Write holding registers of one node (a sealed ``OP_WRITE``); GattRefusedError if it refuses them."""
        node = self._node(unit)
        status, _ = await self.sender.send(node, BLE_GATT_OP_WRITE, ble_gatt_write_body(address, list(values)))
        if status:
            raise GattRefusedError(node.id, status, f"a write of {len(values)} register(s) at {address}")

    async def write_coils(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """BLE nodes have no coils: always refused (no BLE role plans coil writes)."""
        raise GatewayError(f"BLE node {self._node(unit).id}: no coils over GATT")

    async def broadcast(self, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """No broadcast on the air: each node in turn (the first refusal ends it)."""
        for unit in self._nodes:
            await self.write(unit, address, values, priority=priority)

    async def read_table(
        self, unit: int, regmap: RegisterMap, table: int, *, priority: int = URGENT
    ) -> tuple[int, list[int]]:
        """Read the holding registers ``regmap`` spans (sealed ``OP_READ``s of up to 100 registers)."""
        node = self._node(unit)
        if table != HOLDING:
            raise GatewayError(f"BLE node {node.id}: only holding registers are read over GATT (adverts carry "
                               "the readings)")
        blocks = regmap.blocks(table)
        if not blocks:
            return 0, []
        first = blocks[0][0]
        end = max(start + count for start, count in blocks)
        words: list[int] = []
        while first + len(words) < end:
            start = first + len(words)
            count = min(_MAX_READ, end - start)
            status, body = await self.sender.send(node, BLE_GATT_OP_READ,
                                                  bytes((start & 0xFF, start >> 8, count)))
            if status:
                raise GattRefusedError(node.id, status, f"a read of {count} register(s) at {start}")
            if len(body) != 2 * count:
                raise GatewayError(f"BLE node {node.id}: read of {count} register(s) answered {len(body)} bytes")
            words.extend(int.from_bytes(body[i:i + 2], "little") for i in range(0, len(body), 2))
        return first, words

    async def write_read(
        self, unit: int, address: int, values: Sequence[int], regmap: RegisterMap, *, priority: int = URGENT
    ) -> tuple[int, list[int]]:
        """A write, then a read of ``regmap``'s holding registers: two sealed exchanges (GATT has no function 23)."""
        await self.write(unit, address, values, priority=priority)
        return await self.read_table(unit, regmap, HOLDING, priority=priority)

    def request_full_poll(self, unit: int) -> None:
        """Nothing to do: a BLE node's next advert carries its readings anyway."""
