"""The radio host: nodes running the real firmware reach the virtual radio through it, one TCP connection each.

``boards/sim/bluetooth.py`` (in the node's MicroPython process) sends its
``bluetooth.BLE`` calls here as JSON lines (see that module); each connection
gets a Bumble device with the node's address on the :class:`~tools.sim.radio.VirtualRadio`,
which advertises what the firmware asks for. A node that disconnects (its
process ended: a power cut) leaves the radio.

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

from bumble.device import Device

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
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (``port`` 0: a free one); the port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening, drop the nodes' connections and take their devices off the radio."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        address = ""
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                if msg["op"] == "hello":
                    address = str(msg["addr"]).upper()
                    if address in self.radio.devices:  # the node rebooted: its old process is gone
                        await self.radio.remove(address)
                    self.nodes[address] = await self.radio.device(address, f"node-{address[-5:]}")
                elif msg["op"] == "adv":
                    await self._advertise(self.nodes[address], msg)
                    self.adverts[address] = self.adverts.get(address, 0) + 1
                else:
                    log.warning("radio host: unknown call %r from %s", msg.get("op"), address)
        except (ConnectionError, ValueError, KeyError) as exc:
            log.warning("radio host: node %s: %s", address or "?", exc)
        finally:
            self._tasks.discard(task)
            writer.close()
            if address and self.nodes.get(address) is not None:
                del self.nodes[address]
                with contextlib.suppress(KeyError):
                    await self.radio.remove(address)

    @staticmethod
    async def _advertise(device: Device, msg: dict[str, Any]) -> None:
        if msg["us"] is None:
            if device.is_advertising:
                await device.stop_advertising()
            return
        interval_ms = min(max(20.0, msg["us"] / 1000), 10240.0)  # the range of legacy advertising intervals
        resp = bytes.fromhex(msg["resp"]) if msg.get("resp") else None
        await advertise(device, bytes.fromhex(msg["data"]), interval_ms, resp)
