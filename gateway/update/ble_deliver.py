"""Updates over BLE GATT: the same signed package as over a bus, through a BLE node's GATT service.

:class:`GattFileRecords` carries a node's file records (what Modbus functions
20 and 21 carry on a bus) in sealed GATT commands (``OP_FILE_WRITE``,
``OP_FILE_READ``) over one :class:`~gateway.transport.ble_session.GattSession`,
so :func:`gateway.update.deliver.deliver` runs unchanged: BEGIN, the chunks
from where the node's status says (a transfer cut short resumes), COMMIT, and
the wait until the node runs and confirms the new image. The node stages,
checks and switches with the code it uses for an update over its bus
(``firmware/update.py``). A 240-byte chunk does not fit one frame (244 bytes
sealed): it goes in two parts.

Throttled: after ``per_connection`` commands the connection is given back and
the radio left alone for ``rest`` seconds, so the gateway's scanner hears
adverts and other commands get a connection; the sender's connection budget
holds throughout (a session takes one of its places while connected).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.contracts import BLE_GATT_FILE_BODY, BLE_GATT_OP_FILE_READ, BLE_GATT_OP_FILE_WRITE
from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattError, GattSender
from gateway.transport.ble_session import GattSession
from gateway.transport.bus import NodeError, NodeTimeout
from gateway.update.deliver import UPDATE_PRIORITY, Progress, UpdateError, UpdateRefused, deliver
from gateway.update.package import UpdatePackage

__all__ = ["GattFileRecords", "GattLine", "deliver_ble"]

_WRITE_BODY, _READ_BODY, FILE_PART = BLE_GATT_FILE_BODY
_STATUS_MODBUS_MAX = 0x7F  # above: the GATT service's own statuses (replay, bad op), not a Modbus exception code


class GattFileRecords:
    """A BLE node's file records as a :class:`~gateway.update.deliver.FileRecordBus` (the unit is ignored).

    Args:
        session: the node's GATT session.
        per_connection: commands on one connection before it is given back.
        rest: seconds without a connection after each run of ``per_connection`` commands.
    """

    def __init__(self, session: GattSession, *, per_connection: int = 48, rest: float = 0.2) -> None:
        self.session = session
        self.per_connection = per_connection
        self.rest = rest
        self.commands = 0
        """Commands sent, all connections together."""
        self._on_connection = 0

    async def file_record(self, unit: int, file: int, record: int, *, data: bytes = b"", count: int = 0,
                          priority: int = UPDATE_PRIORITY) -> bytes:
        """Write ``data`` to one file record, or read ``count`` words of it (big-endian, as over Modbus)."""
        if data:
            parts = [data[:FILE_PART], data[FILE_PART:]] if len(data) > FILE_PART else [data]
            for n, part in enumerate(parts):
                await self._send(BLE_GATT_OP_FILE_WRITE, bytes(_WRITE_BODY(file, record, int(n == len(parts) - 1),
                                                                           part)))
            return b""
        body = await self._send(BLE_GATT_OP_FILE_READ, bytes(_READ_BODY(file, record, count)))
        # GATT words are little-endian; a Modbus file record's are big-endian, which parse_status reads
        return b"".join(body[i + 1:i + 2] + body[i:i + 1] for i in range(0, len(body), 2))

    async def _send(self, op: int, body: bytes) -> bytes:
        if self._on_connection >= self.per_connection:
            await self.session.release()
            self._on_connection = 0
            await asyncio.sleep(self.rest)  # the radio to the scanner and to other nodes' commands
        try:
            status, answer = await self.session.send(op, body)
        except GattError as exc:
            self._on_connection = 0
            raise NodeTimeout(str(exc)) from exc
        self._on_connection += 1
        self.commands += 1
        if status:
            code = status if status <= _STATUS_MODBUS_MAX else None  # None: deliver() tries again
            raise NodeError(f"BLE node {self.session.node.id} answered status {status}", code)
        return answer


class GattLine:
    """A roll-out's BLE nodes as one line of :func:`gateway.update.rollout.roll_out`: file records by unit.

    Each node's records go over its own :class:`GattSession` (made when first used); the roll-out takes
    one node of a line at a time, which is what one radio and the sender's connection budget allow.
    :meth:`close` gives every connection back.

    Args:
        sender: the gateway's GATT client.
        nodes: the BLE node of each unit the roll-out names.
    """

    def __init__(self, sender: GattSender, nodes: dict[int, BleNodeConfig]) -> None:
        self.sender = sender
        self.nodes = nodes
        self._records: dict[int, GattFileRecords] = {}

    async def file_record(self, unit: int, file: int, record: int, *, data: bytes = b"", count: int = 0,
                          priority: int = UPDATE_PRIORITY) -> bytes:
        """One file record of the node of ``unit`` (see :meth:`GattFileRecords.file_record`)."""
        records = self._records.get(unit)
        if records is None:
            node = self.nodes.get(unit)
            if node is None:
                raise NodeError(f"no BLE node with unit {unit} in this roll-out", None)
            records = self._records[unit] = GattFileRecords(GattSession(self.sender, node))
        return await records.file_record(unit, file, record, data=data, count=count, priority=priority)

    async def close(self) -> None:
        """Give back every node's connection."""
        for records in self._records.values():
            await records.session.release()


async def deliver_ble(
    sender: GattSender, node: BleNodeConfig, package: UpdatePackage, *, progress: Progress | None = None,
    attempts: int = 5, back_within: float = 120.0, per_connection: int = 48, rest: float = 0.2,
) -> dict[str, Any]:
    """Update the BLE node ``node`` with ``package`` over GATT; the node's final status. Raises UpdateError."""
    async with GattSession(sender, node) as session:
        records = GattFileRecords(session, per_connection=per_connection, rest=rest)
        try:
            return await deliver(records, 0, package, progress=progress, attempts=attempts, back_within=back_within)
        except UpdateRefused as exc:
            raise UpdateRefused(_named(exc, node), exc.reason) from exc
        except UpdateError as exc:
            raise type(exc)(_named(exc, node)) from exc


def _named(exc: UpdateError, node: BleNodeConfig) -> str:
    # deliver() names a bus node by its unit; a BLE node has its id
    return str(exc).replace("unit 0", f"BLE node {node.id}", 1)
