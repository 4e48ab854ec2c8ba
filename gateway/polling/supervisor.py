"""The polling side of a gateway: one bus adapter and one poller per ``[[bus]]``, reconfigurable.

:class:`Polling` owns the buses and their pollers. :meth:`Polling.apply` takes a
new configuration (SIGHUP) and changes only what changed: a bus whose settings
changed is closed and reopened; a bus whose nodes changed gets a new poller
(the nodes keep their state and counters); untouched buses poll on undisturbed.
The ``buses`` dict is updated in place, so whoever holds it (the command
router) sees the new set.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.polling.poller import OFFLINE_INTERVAL, BusPoller, OnReadings, OnState
from gateway.polling.scheduler import Gate
from gateway.service.cancelling import cancel_and_wait
from gateway.service.config import Config, NodeConfig
from gateway.service.stats import BusStats, GatewayStats, NodeStats
from gateway.transport.bus import Bus, open_bus

log = logging.getLogger(__name__)


class Polling:
    """Buses and pollers of one configuration.

    Args:
        config: the configuration to poll.
        stats: gateway state; bus and node entries are added (and dropped on reload).
        on_readings: receives every good poll.
        on_state: receives node online/offline changes.
        gate: back-pressure from the uplink.
        offline_interval: seconds between polls of an offline node.
        clock: wall clock for poll times.
    """

    def __init__(
        self,
        config: Config,
        stats: GatewayStats,
        on_readings: OnReadings,
        *,
        on_state: OnState | None = None,
        gate: Gate | None = None,
        offline_interval: float = OFFLINE_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.stats = stats
        self.on_readings = on_readings
        self.on_state = on_state
        self.gate = gate or Gate()
        self.offline_interval = offline_interval
        self.clock = clock
        self.buses: dict[str, Bus] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        for bus in config.bus:
            self._open(bus.name, config)

    def _open(self, name: str, config: Config) -> None:
        cfg = config.bus_named(name)
        stats = self.stats.buses.setdefault(name, BusStats(name))
        self.buses[name] = open_bus(cfg, stats, units=[n.unit for n in config.nodes_on(name)])
        for node in config.nodes_on(name):
            self.stats.nodes.setdefault(node.id, NodeStats(node.id, node.bus, node.unit, node.role))

    def start(self) -> None:
        """Start one poller task per bus (call inside the running loop)."""
        for name in self.buses:
            self._start(name)

    def _start(self, name: str) -> None:
        poller = BusPoller(
            self.buses[name], self.config.nodes_on(name), self.stats.nodes, self.on_readings,
            offline_interval=self.offline_interval, clock=self.clock, on_state=self.on_state,
            gate=self.gate, totals=self.stats,
        )
        self._tasks[name] = asyncio.get_running_loop().create_task(poller.run(), name=f"poll-{name}")
        self._tasks[name].add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("poller %s crashed", task.get_name(), exc_info=task.exception())

    async def apply(self, new: Config) -> list[str]:
        """Switch to ``new``: restart only the buses whose settings or nodes changed; the changes made."""
        old = self.config
        changes: list[str] = []
        old_buses = {b.name: b for b in old.bus}
        new_buses = {b.name: b for b in new.bus}
        for name in list(old_buses):
            gone = name not in new_buses
            if gone or old_buses[name] != new_buses[name]:
                await self._stop(name)
                self.buses.pop(name).close()
                if gone:
                    self.stats.buses.pop(name, None)
                changes.append(f"bus {name} {'removed' if gone else 'reopened'}")
        self.config = new
        for name in new_buses:
            if name not in self.buses:
                self._open(name, new)
                self._start(name)
                if name not in old_buses:
                    changes.append(f"bus {name} added")
            elif _nodes(old.nodes_on(name)) != _nodes(new.nodes_on(name)):
                await self._stop(name)
                self.buses.pop(name).close()
                self._open(name, new)  # the TCP backend learns the new units for broadcasts
                self._start(name)
                changes.append(f"nodes of bus {name} changed")
        kept = {n.id for n in new.node}
        for node_id in [k for k in self.stats.nodes if k not in kept]:
            del self.stats.nodes[node_id]
        return changes

    async def _stop(self, name: str) -> None:
        task = self._tasks.pop(name, None)
        if task is not None:  # a poller cancelled as an answer came in polls on: cancel_and_wait insists
            await cancel_and_wait([task])

    async def stop(self) -> None:
        """Stop every poller and close every bus."""
        for name in list(self._tasks):
            await self._stop(name)
        self.close()

    def close(self) -> None:
        """Close every bus (pollers must be stopped)."""
        for bus in self.buses.values():
            bus.close()


def _nodes(nodes: list[NodeConfig]) -> list[NodeConfig]:
    return sorted(nodes, key=lambda n: n.id)
