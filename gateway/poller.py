"""Polling: one task per bus reads its nodes, each at its own interval.

Nodes on one bus are polled one after another (a bus carries one transaction at
a time); buses run in parallel. Each poll reads every register of the node in
one request per table, decodes the words through the role's register map and
hands ``(node, time, readings)`` to a callback, which turns them into SenML.

A node goes offline after :data:`~gateway.stats.OFFLINE_AFTER` failed polls in
a row and comes back online with its next good poll. While offline it is polled
at most every :data:`OFFLINE_INTERVAL` seconds, so that a dead node does not eat
the line with timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.config import NodeConfig
from gateway.contracts import HOLDING, INPUT, Number, Register, RegisterMap, load_role
from gateway.modbus_bus import BusError, ModbusBus, NodeError
from gateway.priority_lock import ROUTINE
from gateway.stats import OFFLINE_AFTER, NodeStats

log = logging.getLogger(__name__)

OFFLINE_INTERVAL = 5.0
"""Seconds between polls of an offline node (or its own interval, if longer)."""

Readings = list[tuple[Register, Number]]
"""``(register, raw value)`` pairs of one poll, in register-map order."""
OnReadings = Callable[[NodeConfig, float, Readings], None]
"""Called after each good poll with the node, the poll time (epoch seconds) and the readings."""


def decode(regmap: RegisterMap, blocks: dict[int, tuple[int, list[int]]]) -> Readings:
    """Words read from a node -> ``(register, raw)`` for every register, holding registers first."""
    readings: Readings = []
    for table in (HOLDING, INPUT):
        if table in blocks:
            start, words = blocks[table]
            readings.extend(regmap.decode(table, start, words))
    return readings


class BusPoller:
    """Polls the nodes of one bus forever.

    Args:
        bus: the bus the nodes hang on.
        nodes: the nodes to poll.
        stats: live state per node id; entries are created for missing nodes.
        on_readings: receives every good poll.
        offline_interval: see :data:`OFFLINE_INTERVAL`.
        clock: wall clock for poll times (epoch seconds).
    """

    def __init__(
        self,
        bus: ModbusBus,
        nodes: list[NodeConfig],
        stats: dict[str, NodeStats],
        on_readings: OnReadings,
        *,
        offline_interval: float = OFFLINE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.nodes = list(nodes)
        self.stats = stats
        self.on_readings = on_readings
        self.offline_interval = offline_interval
        self.clock = clock
        for node in self.nodes:
            stats.setdefault(node.id, NodeStats(node.id, node.bus, node.unit, node.role))

    async def run(self) -> None:
        """Poll until cancelled, most overdue node first."""
        if not self.nodes:
            return
        loop = asyncio.get_running_loop()
        due = dict.fromkeys((n.id for n in self.nodes), loop.time())
        while True:
            node = min(self.nodes, key=lambda n: due[n.id])
            delay = due[node.id] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.poll(node)
            interval = node.interval
            if self.stats[node.id].online is False:
                interval = max(interval, self.offline_interval)
            # No catch-up bursts: a late poll restarts the node's rhythm from now.
            due[node.id] = max(due[node.id] + interval, loop.time())

    async def poll(self, node: NodeConfig, *, priority: int = ROUTINE) -> bool:
        """Poll one node once, update its state, report readings; True on success."""
        state = self.stats[node.id]
        regmap = load_role(node.role)
        try:
            blocks = await self.bus.read_node(node.unit, regmap, priority=priority)
            readings = decode(regmap, blocks)
            _check_role(regmap, readings, node)
        except BusError as exc:
            self._failed(node, state, exc)
            return False
        now = self.clock()
        state.values.update({reg.name: reg.value(raw) for reg, raw in readings})
        state.last_poll = now
        state.polls += 1
        state.consecutive_failures = 0
        state.last_error = None
        if state.online is not True:
            log.info(
                "node %s %s (unit %d on %s)",
                node.id, "back online" if state.online is False else "online", node.unit, node.bus,
            )
            state.online = True
        self.on_readings(node, now, readings)
        return True

    def _failed(self, node: NodeConfig, state: NodeStats, exc: BusError) -> None:
        state.failures += 1
        state.consecutive_failures += 1
        state.last_error = str(exc)
        log.debug("node %s: poll failed: %s", node.id, exc)
        if state.online is not False and state.consecutive_failures >= OFFLINE_AFTER:
            log.warning(
                "node %s offline after %d failed polls: %s", node.id, state.consecutive_failures, exc
            )
            state.online = False


def _check_role(regmap: RegisterMap, readings: Readings, node: NodeConfig) -> None:
    """A node that reports another role than configured would be decoded as nonsense: refuse it."""
    for reg, raw in readings:
        if reg.name == "role" and raw != regmap.role_id:
            raise NodeError(
                f"unit {node.unit} on {node.bus} reports role {raw}, "
                f"configured as {regmap.role} ({regmap.role_id})"
            )
