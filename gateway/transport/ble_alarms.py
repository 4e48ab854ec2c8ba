"""Alarm acknowledgement over GATT: a BLE node repeats its alarm adverts until the gateway says it heard them.

The receiver (:class:`~gateway.transport.ble_receiver.AdvertReceiver`) calls
:class:`AlarmAcknowledger` with the node of each new alarm advert that raises
a bit; it sends the node a sealed ``OP_ACK_ALARM`` through the
:class:`~gateway.transport.ble_client.GattSender` (so within its connection
budget). One acknowledgement at a time per node: the alarm's burst and repeats
that arrive meanwhile cost no further connection. A failed acknowledgement is
logged and counted; the node then repeats its alarm until its own timeout, as
it would without a gateway, and the next repeat heard triggers another try.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter

from gateway.contracts import BLE_GATT_OP_ACK_ALARM
from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattSender

log = logging.getLogger(__name__)

__all__ = ["AlarmAcknowledger"]


class AlarmAcknowledger:
    """Acknowledges BLE nodes' alarms through ``sender``; call it with the node whose alarm was heard."""

    def __init__(self, sender: GattSender) -> None:
        self.sender = sender
        self.acknowledged: Counter[str] = Counter()
        """Alarms the node confirmed, by node id."""
        self.failed: Counter[str] = Counter()
        """Acknowledgements that did not get through (or were refused), by node id."""
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def __call__(self, node: BleNodeConfig) -> None:
        """Acknowledge ``node``'s alarm, unless an acknowledgement to it is on its way already."""
        if node.id in self._busy:
            return
        self._busy.add(node.id)
        task = asyncio.get_running_loop().create_task(self._acknowledge(node), name=f"ack-{node.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _acknowledge(self, node: BleNodeConfig) -> None:
        try:
            status, _ = await self.sender.send(node, BLE_GATT_OP_ACK_ALARM)
        except Exception as exc:  # no radio, a vanished node: the node's repeats carry the alarm meanwhile
            self.failed[node.id] += 1
            log.warning("BLE node %s: alarm not acknowledged: %s", node.id, exc)
        else:
            if status:
                self.failed[node.id] += 1
                log.warning("BLE node %s refused the alarm acknowledgement: status %d", node.id, status)
            else:
                self.acknowledged[node.id] += 1
                log.info("BLE node %s: alarm acknowledged", node.id)
        finally:
            self._busy.discard(node.id)

    async def settled(self) -> None:
        """Wait until the acknowledgements on their way now have succeeded or failed."""
        await asyncio.gather(*self._tasks)

    async def close(self) -> None:
        """Cancel the acknowledgements on their way and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
