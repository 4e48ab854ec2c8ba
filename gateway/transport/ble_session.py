"""Many commands to one BLE node over one GATT connection: the chunks of an update.

:class:`~gateway.transport.ble_client.GattSender` connects for each command,
which suits a setting or an acknowledgement but not the hundreds of frames of
an image. A :class:`GattSession` holds one of the sender's connections (its
budget: the scanner keeps hearing adverts) for a run of commands, each sealed
with the next counter kept on disk and answered by the node's sealed result.
Any failure (timeout, lost connection, a forged or malformed result) closes
the connection and raises :class:`~gateway.transport.ble_client.GattError`;
the next command connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import NoReturn

from bleak import BleakClient
from bleak.exc import BleakError

from gateway.contracts import BLE_GATT_COMMAND, BLE_GATT_RESULT, AuthenticationError, DecodeError, ble_gatt_frames
from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattError, GattSender

log = logging.getLogger(__name__)

__all__ = ["GattSession"]


class GattSession:
    """Commands to ``node`` through ``sender``'s windows, backend and connection budget, one connection at a time.

    Use as an async context manager; :meth:`release` gives the connection (and its place in the budget) back
    between runs of commands.
    """

    def __init__(self, sender: GattSender, node: BleNodeConfig) -> None:
        self.sender = sender
        self.node = node
        self.connections = 0
        """Connections made so far."""
        self._frames = ble_gatt_frames(node.key_bytes, node.normal_address)
        self._client: BleakClient | None = None
        self._results: asyncio.Queue[bytes] = asyncio.Queue()
        self._slot = False

    async def __aenter__(self) -> GattSession:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.release()

    async def send(self, op: int, body: bytes = b"") -> tuple[int, bytes]:
        """One command on the session's connection (made if needed); the node's (status, body). GattError."""
        counter = self.sender.windows.next_command_counter(self.node.id)
        frame = self._frames.command(counter, op, body)
        self.sender.attempts += 1
        try:
            async with asyncio.timeout(self.sender.attempt_timeout):
                client = await self._connect()
                await client.write_gatt_char(BLE_GATT_COMMAND, frame, response=True)
                while True:
                    got, status, answer = self._frames.open_result(await self._results.get())
                    if got == counter:
                        return int(status), bytes(answer)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this task is being cancelled: not the node's doing
            # the connection went away under a request, whose future the stack cancelled (a node's reset)
            await self._failed(exc)
        except (TimeoutError, BleakError, AuthenticationError, DecodeError) as exc:
            await self._failed(exc)

    async def _failed(self, exc: BaseException) -> NoReturn:
        self.sender.failures += 1
        await self.release()
        problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise GattError(self.node.id, 1, problem) from exc

    async def _connect(self) -> BleakClient:
        if self._client is not None:
            if self._client.is_connected:
                return self._client
            await self.release()  # the node went away (a reset): connect again
        await self.sender.connection_slot().acquire()
        self._slot = True
        client = BleakClient(self.node.normal_address, backend=self.sender.backend,
                             timeout=self.sender.attempt_timeout)
        self._client = client  # before connecting: a connect cut short is undone by release()
        self._results = asyncio.Queue()
        await client.connect()
        results = self._results
        await client.start_notify(BLE_GATT_RESULT, lambda _char, data: results.put_nowait(bytes(data)))
        self.connections += 1
        return client

    async def release(self) -> None:
        """Disconnect and give the connection's place in the budget back (nothing if not connected)."""
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a vanished node cannot be disconnected politely
                async with asyncio.timeout(1.0):
                    await client.disconnect()
        if self._slot:
            self._slot = False
            self.sender.connection_slot().release()
