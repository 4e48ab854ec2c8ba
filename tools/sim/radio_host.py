"""The radio host: nodes running the real firmware reach the virtual radio through it, one TCP connection each.

``boards/sim/bluetooth.py`` (in the node's MicroPython process) sends its
``bluetooth.BLE`` calls here as JSON lines (see that module); each connection
gets a Bumble device with the node's address on the :class:`~tools.sim.radio.VirtualRadio`,
which advertises what the firmware asks for, serves the GATT services the
firmware registers (a central's writes go back to the node as
``_IRQ_GATTS_WRITE`` events, with connects and disconnects) and sends its
notifications. A node that disconnects (its process ended: a power cut) leaves
the radio.

    host = RadioHost(radio)
    port = await host.start()     # a free loopback port; sim.json "radio": f"127.0.0.1:{port}"
    ...
    await host.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service

from tools.sim.ble_beacons import advertise
from tools.sim.radio import VirtualRadio

log = logging.getLogger(__name__)

__all__ = ["RadioHost"]


class RadioHost:
    """Serves the firmware's radio calls on loopback for ``radio``."""

    def __init__(self, radio: VirtualRadio) -> None:
        self.radio = radio
        self.nodes: dict[str, Device] = {}
        """Devices of the connected nodes, by address."""
        self.adverts: dict[str, int] = {}
        """Advertising-data changes per node (each sealed advert is one)."""
        self._characteristics: dict[str, dict[int, Characteristic[bytes]]] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (``port`` 0: a free one); the port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, drop the nodes' connections and take their devices off the radio."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Closing each connection ends its reader at EOF: a cancelled connection task would make asyncio
        # log its cancellation as an error (Python 3.11's stream callback asks the task for its exception).
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        address = ""
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                op = msg[0]
                if op == _HELLO:
                    address = str(msg[1]).upper()
                    if address in self.radio.devices:  # the node rebooted: its old process is gone
                        await self.radio.remove(address)
                    device = await self.radio.device(address, f"node-{address[-5:]}")
                    self.nodes[address] = device
                    _forward_connections(device, writer)
                elif op == _ADVERTISE:
                    await self._advertise(self.nodes[address], msg)
                    self.adverts[address] = self.adverts.get(address, 0) + 1
                elif op == _SERVICES:
                    self._characteristics[address] = _register(self.nodes[address], msg[1], writer)
                elif op == _TX_POWER:
                    self.radio.link.tx_power[address] = int(msg[1])
                elif op == _NOTIFY:
                    await self._notify(self.nodes[address], self._characteristics[address], msg)
                else:
                    log.warning("radio host: unknown call %r from %s", op, address)
        except (ConnectionError, ValueError, KeyError, IndexError, TypeError) as exc:
            log.warning("radio host: node %s: %s", address or "?", exc)
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()
            if address and self.nodes.get(address) is not None:
                del self.nodes[address]
                with contextlib.suppress(KeyError):
                    await self.radio.remove(address)

    @staticmethod
    async def _notify(device: Device, characteristics: dict[int, Characteristic[bytes]], msg: list[Any]) -> None:
        _, conn, handle, data = msg
        connection = device.lookup_connection(int(conn))
        if connection is None:
            log.warning("radio host: notify on connection %s, which is closed", conn)
            return
        await device.notify_subscriber(connection, characteristics[int(handle)], bytes.fromhex(data))

    @staticmethod
    async def _advertise(device: Device, msg: list[Any]) -> None:
        if msg[1] is None:
            if device.is_advertising:
                await device.stop_advertising()
            return
        _, interval_us, data, resp = msg[:4]
        interval_ms = min(max(20.0, interval_us / 1000), 10240.0)  # the range of legacy advertising intervals
        await advertise(device, bytes.fromhex(data), interval_ms, bytes.fromhex(resp) if resp else None)


# The node's calls (boards/sim/bluetooth.py), the first item of each line it sends.
_HELLO = 1
_ADVERTISE = 2
_SERVICES = 3
_NOTIFY = 4
_TX_POWER = 5
_IRQ_CENTRAL_CONNECT = 1
_IRQ_CENTRAL_DISCONNECT = 2
_IRQ_GATTS_WRITE = 3
_FLAG_READ = 0x02
_FLAG_WRITE_NO_RESPONSE = 0x04
_FLAG_WRITE = 0x08
_FLAG_NOTIFY = 0x10


def _event(writer: asyncio.StreamWriter, event: list[Any]) -> None:
    if not writer.is_closing():
        writer.write(json.dumps(event).encode() + b"\n")


def _forward_connections(device: Device, writer: asyncio.StreamWriter) -> None:
    """Tell the node of every central that connects and disconnects (as its IRQ events)."""

    def on_connection(connection: Connection) -> None:
        peer = str(connection.peer_address).split("/")[0].replace(":", "")
        _event(writer, [_IRQ_CENTRAL_CONNECT, connection.handle, peer])

        def on_disconnection(_reason: int) -> None:
            _event(writer, [_IRQ_CENTRAL_DISCONNECT, connection.handle, peer])

        connection.on("disconnection", on_disconnection)

    device.on("connection", on_connection)


def _register(device: Device, services: list[Any], writer: asyncio.StreamWriter) -> dict[int, Characteristic[bytes]]:
    """Add the firmware's services to ``device``; its characteristics by the handles the node numbered."""
    by_handle: dict[int, Characteristic[bytes]] = {}
    for service_uuid, rows in services:
        characteristics: list[Characteristic[bytes]] = []
        for char_uuid, flags, handle in rows:
            properties = Characteristic.Properties(0)
            permissions = Characteristic.Permissions(0)
            if flags & _FLAG_READ:
                properties |= Characteristic.Properties.READ
                permissions |= Characteristic.READABLE
            if flags & _FLAG_WRITE:
                properties |= Characteristic.Properties.WRITE
            if flags & _FLAG_WRITE_NO_RESPONSE:
                properties |= Characteristic.Properties.WRITE_WITHOUT_RESPONSE
            if flags & (_FLAG_WRITE | _FLAG_WRITE_NO_RESPONSE):
                permissions |= Characteristic.WRITEABLE
            if flags & _FLAG_NOTIFY:
                properties |= Characteristic.Properties.NOTIFY
            value: Any = CharacteristicValue(write=_on_write(writer, int(handle)))
            if not flags & (_FLAG_WRITE | _FLAG_WRITE_NO_RESPONSE):
                value = b""
            characteristic: Characteristic[bytes] = Characteristic(char_uuid, properties, permissions, value)
            characteristics.append(characteristic)
            by_handle[int(handle)] = characteristic
        device.add_service(Service(service_uuid, characteristics))
    return by_handle


def _on_write(writer: asyncio.StreamWriter, handle: int) -> Any:
    def write(connection: Connection, value: bytes) -> None:
        _event(writer, [_IRQ_GATTS_WRITE, connection.handle, handle, bytes(value).hex()])

    return write
