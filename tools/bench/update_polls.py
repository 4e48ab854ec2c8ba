"""Polls of a line's other nodes while an update runs on it: what ``streetedge bench update`` reports beside times.

:class:`PollWatch` runs the gateway's own poller
(:class:`~gateway.polling.poller.BusPoller`: its schedule, its poll plans, which
read the registers due rather than all of them, its priority) over the
bystanders, on the same bus object the update uses, so polls and update chunks
share the line through the bus's priority lock exactly as in the daemon. Every
good poll of a node records the interval since that node's previous good poll
under the phase it ended in (``before`` the update started, ``during`` it);
the delay is that interval minus the configured one (how late the poll came).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

from gateway.polling.poller import BusPoller, Readings
from gateway.service.config import NodeConfig
from gateway.service.stats import NodeStats
from gateway.transport.bus import Bus
from tools.bench.commands import percentile


@dataclass
class Phase:
    """The good polls of one phase (intervals between a node's polls) and the failed ones."""

    intervals: list[float] = field(default_factory=list)
    failed: int = 0

    def summary(self, nominal: float) -> dict[str, float]:
        """Polls, failures, and p50 / p95 / max of the interval and of the delay (interval - ``nominal``), s."""
        out: dict[str, float] = {"polls": len(self.intervals), "failed": self.failed}
        for label, q in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
            value = percentile(self.intervals, q) if self.intervals else float("nan")
            out[f"interval_{label}"] = value
            out[f"delay_{label}"] = max(0.0, value - nominal)
        return out


class PollWatch:
    """The gateway's poller over ``units`` on ``bus``, each due every ``interval`` s; :attr:`phases` has the figures."""

    def __init__(self, bus: Bus, units: list[int], interval: float = 1.0, role: str = "lamp") -> None:
        self.interval = interval
        self.phase = "before"
        self.phases: dict[str, Phase] = {"before": Phase(), "during": Phase()}
        self.nodes = [NodeConfig(id=f"{role}-{u}", bus=bus.name, unit=u, role=role, interval=interval)
                      for u in units]
        self.stats: dict[str, NodeStats] = {}
        self._last: dict[str, float] = {}
        self.poller = BusPoller(bus, self.nodes, self.stats, self._took)

    def _took(self, node: NodeConfig, when: float, readings: Readings) -> None:
        now = time.monotonic()
        last = self._last.get(node.id)
        if last is not None:
            self.phases[self.phase].intervals.append(now - last)
        self._last[node.id] = now

    def start_update(self) -> None:
        """From now on polls count as ``during`` the update."""
        self._close_phase()
        self.phase = "during"

    def _close_phase(self) -> None:
        """The failed polls of the current phase: the poller's failures so far, less the earlier phases'."""
        failures = sum(s.failures for s in self.stats.values())
        self.phases[self.phase].failed = failures - sum(p.failed for k, p in self.phases.items() if k != self.phase)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set."""
        task = asyncio.create_task(self.poller.run())
        try:
            await stop.wait()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._close_phase()
