"""Commands to BLE nodes over GATT: connect only to send, within a connection budget, one retry, never stuck.

:class:`GattSender` seals a command with the node's key and a counter kept on
disk (:class:`~gateway.transport.ble_window.ReplayWindows` keeps both), connects
with bleak (a ``backend=`` class replaces BlueZ on the virtual radio),
subscribes to the result characteristic, writes the command and waits for the
node's sealed result, then disconnects. At most ``budget`` connections are
open at once, so the scanner keeps hearing adverts; each attempt is bounded
by ``attempt_timeout``; a node that vanishes mid-connection costs one retry
(a new counter: the node never sees a command counter twice), then a
:class:`GattError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from bleak import BleakClient
from bleak.backends.client import BaseBleakClient
from bleak.exc import BleakError

from gateway.contracts import (
    BLE_GATT_COMMAND,
    BLE_GATT_RESULT,
    AuthenticationError,
    BleGattFrames,
    DecodeError,
    ble_gatt_frames,
)
from gateway.errors import GatewayError
from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_window import ReplayWindows

log = logging.getLogger(__name__)

__all__ = ["GattError", "GattSender"]


class GattError(GatewayError):
    """A command that could not be carried to a BLE node: ``node`` the node id, ``attempts`` how many were made."""

    def __init__(self, node: str, attempts: int, problem: str) -> None:
        super().__init__(f"BLE node {node}: {problem} (after {attempts} attempt(s))")
        self.node = node
        self.attempts = attempts


class GattSender:
    """Carries commands to BLE nodes.

    Args:
        windows: the replay windows' file, which also keeps each node's command counter.
        backend: a bleak client backend class; None for the platform's (BlueZ).
        budget: connections open at once.
        attempt_timeout: seconds one attempt (connect, write, result) may take.
        retries: further attempts after a failed one.
        client_args: more keyword arguments for ``BleakClient`` (e.g. ``bluez={"adapter": "hci1"}``).
    """

    def __init__(self, windows: ReplayWindows, *, backend: type[BaseBleakClient] | None = None, budget: int = 1,
                 attempt_timeout: float = 10.0, retries: int = 1, client_args: dict[str, Any] | None = None) -> None:
        self.windows = windows
        self.backend = backend
        self.client_args = client_args or {}
        self.attempt_timeout = attempt_timeout
        self.retries = retries
        self.attempts = 0
        """Attempts made, all commands together."""
        self.failures = 0
        """Attempts that failed (timeout, a connection lost, a refused or forged result)."""
        self._budget = asyncio.Semaphore(budget)

    def connection_slot(self) -> asyncio.Semaphore:
        """The connection budget, for a session of many commands on one connection (``ble_session``)."""
        return self._budget

    async def send(self, node: BleNodeConfig, op: int, body: bytes = b"") -> tuple[int, bytes]:
        """Send one command; the node's (status, body). GattError when every attempt failed."""
        frames = ble_gatt_frames(node.key_bytes, node.normal_address)
        problem = ""
        for attempt in range(1, self.retries + 2):
            counter = self.windows.next_command_counter(node.id)
            frame = frames.command(counter, op, body)
            self.attempts += 1
            try:
                async with self._budget, asyncio.timeout(self.attempt_timeout):
                    status, answer = await self._attempt(node.normal_address, frame, counter, frames)
            except (TimeoutError, BleakError, AuthenticationError, DecodeError) as exc:
                self.failures += 1
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("BLE node %s: command attempt %d failed: %s", node.id, attempt, problem)
                continue
            return status, answer
        raise GattError(node.id, self.retries + 1, problem)

    async def _attempt(self, address: str, frame: bytes, counter: int, frames: BleGattFrames) -> tuple[int, bytes]:
        results: asyncio.Queue[bytes] = asyncio.Queue()
        client = BleakClient(address, backend=self.backend, timeout=self.attempt_timeout, **self.client_args)
        try:
            await client.connect()  # inside: a connect cut short by the timeout must be undone too
            await client.start_notify(BLE_GATT_RESULT, lambda _char, data: results.put_nowait(bytes(data)))
            await client.write_gatt_char(BLE_GATT_COMMAND, frame, response=True)
            while True:
                got_counter, status, answer = frames.open_result(await results.get())
                if got_counter == counter:
                    return int(status), bytes(answer)
        finally:
            with contextlib.suppress(Exception):  # a vanished node cannot be disconnected politely
                async with asyncio.timeout(1.0):
                    await client.disconnect()
