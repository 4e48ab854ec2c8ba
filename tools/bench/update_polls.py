"""Polls of a line's other nodes while an update runs on it: what ``streetedge bench update`` reports beside times.

:class:`PollWatch` polls each bystander as the gateway does (every register of
the node, :meth:`~gateway.transport.bus.Bus.read_node` at the polls' priority,
one poll every ``interval`` seconds, a slot missed is skipped) on the same bus
object the update uses, so polls and update chunks share the line through the
bus's priority lock exactly as in the daemon. Each poll records its delay (its
answer's arrival minus the time it was due) and the interval since the
node's previous good poll, under the phase it ended in (``before`` the update
started, ``during`` it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from gateway.contracts import load_role
from gateway.transport.bus import Bus, BusError
from gateway.transport.priority_lock import ROUTINE
from tools.bench.commands import percentile


@dataclass
class Phase:
    """The polls of one phase: delays, intervals between good polls of a node, and failures."""

    delays: list[float] = field(default_factory=list)
    intervals: list[float] = field(default_factory=list)
    failed: int = 0

    def summary(self) -> dict[str, float]:
        """p50 / p95 / max of delay and interval (seconds), polls and failures."""
        out: dict[str, float] = {"polls": len(self.delays), "failed": self.failed}
        for name, values in (("delay", self.delays), ("interval", self.intervals)):
            for label, q in (("p50", 0.5), ("p95", 0.95), ("max", 1.0)):
                out[f"{name}_{label}"] = percentile(values, q) if values else float("nan")
        return out


class PollWatch:
    """Polls ``units`` on ``bus`` every ``interval`` s until :meth:`stop`; :attr:`phases` holds the figures."""

    def __init__(self, bus: Bus, units: list[int], interval: float = 1.0, role: str = "lamp") -> None:
        self.bus = bus
        self.units = units
        self.interval = interval
        self.regmap = load_role(role)
        self.phase = "before"
        self.phases: dict[str, Phase] = {"before": Phase(), "during": Phase()}
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """End the poll loops after their current poll."""
        self._stop.set()

    async def run(self) -> None:
        """Poll every unit until stopped."""
        await asyncio.gather(*(self._poll(unit) for unit in self.units))

    async def _poll(self, unit: int) -> None:
        due = time.monotonic()
        last_good: float | None = None
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), max(0.0, due - time.monotonic()))
                return
            except TimeoutError:
                pass
            try:
                await self.bus.read_node(unit, self.regmap, priority=ROUTINE)
                good = True
            except BusError:
                good = False
            end = time.monotonic()
            phase = self.phases[self.phase]
            phase.delays.append(end - due)
            if good:
                if last_good is not None:
                    phase.intervals.append(end - last_good)
                last_good = end
            else:
                phase.failed += 1
            due = max(due + self.interval, end)  # a slot missed is skipped, as the gateway's scheduler does
