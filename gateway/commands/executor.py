"""Carrying out command plans on one bus: reads before, writes or a broadcast, then the confirming reads.

For the plans of one command on one bus (:class:`~gateway.commands.node_plan.NodePlan`):

1. offline nodes are left out (``offline``);
2. the reads a plan needs before writing (a reboot's boot counter); a node
   that does not answer them is not written;
3. where the plans cover every configured node of the bus and write the same
   words, the writes go out as broadcasts (unit 0), in order; otherwise each
   node is written in turn (function 16), and a failed write is that node's
   problem;
4. each written node is read back and its plan judges the values (a plan
   that writes one run and reads one holding block back gets both in one
   transaction, :meth:`~gateway.transport.bus.Bus.write_read`: function 23 on a
   line); a plan with ``settle`` is read again (``every`` seconds apart) until it is
   confirmed or ``settle`` seconds have passed since the writes; nodes are
   written and read :data:`IN_FLIGHT` at a time, so that the bus goes from
   one of the command's requests to the next without polls in between;
5. a confirmed plan with a ``follow`` step (a reboot sets the clock again)
   runs that step on the node the same way.

Everything uses the bus with urgent priority, so commands overtake queued
polls. Values read back update the gateway's live view of the node.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from gateway.commands.node_plan import NodePlan, Read, Readback, Run
from gateway.contracts import HOLDING, Number, RegisterMap
from gateway.service.stats import GatewayStats
from gateway.transport.priority_lock import URGENT

IN_FLIGHT = 4
"""Nodes of one command worked on at once. A serial line still carries one transaction at a time, but the
next request of the command is already waiting (urgent) when one ends, so queued polls do not slip in
between the read-backs of a command; a TCP bus pipelines them."""


class CommandBus(Protocol):
    """What the executor needs of a bus (any backend of :mod:`gateway.transport.bus`)."""

    async def write(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Write holding registers of one node."""

    async def write_coils(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Set coils of one node."""

    async def broadcast(self, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Write holding registers of every node of the bus (unit 0)."""

    async def read_table(
        self, unit: int, regmap: RegisterMap, table: int, *, priority: int = URGENT
    ) -> tuple[int, Sequence[int]]:
        """Read the registers of one table of ``regmap``."""

    async def write_read(
        self, unit: int, address: int, values: Sequence[int], regmap: RegisterMap, *, priority: int = URGENT
    ) -> tuple[int, Sequence[int]]:
        """Write holding registers of one node and read ``regmap``'s holding table back (in one transaction
        where the bus can)."""

    def request_full_poll(self, unit: int) -> None:
        """Have the poller read every register of ``unit`` at its next poll."""


class BusExecutor:
    """Executes the plans of one command on one bus.

    Args:
        bus: the bus adapter.
        name: the bus name (for the result's detail).
        on_bus: ids of every node configured on the bus (a broadcast must cover them all).
        stats: live state: online flags are read, values read back are recorded.
        clock: wall clock (for writes that carry the time, and for checks).
    """

    def __init__(
        self, bus: CommandBus, name: str, on_bus: set[str], stats: GatewayStats, clock: Callable[[], float]
    ) -> None:
        self.bus = bus
        self.name = name
        self.on_bus = on_bus
        self.stats = stats
        self.clock = clock
        self.write_s = 0.0
        """Seconds :meth:`run` spent on reads before and writes (waiting for the line included)."""
        self.confirm_s = 0.0
        """Seconds :meth:`run` spent reading back (settle pauses included)."""

    async def run(self, plans: list[NodePlan]) -> tuple[dict[str, str], str]:
        """Carry out ``plans``; returns (problem by node id for the unconfirmed, a note for the detail)."""
        began = time.perf_counter()
        problems: dict[str, str] = {}
        before: dict[str, dict[str, Number]] = {}
        live: list[NodePlan] = []
        for plan in plans:
            if self._online(plan.node.id) is False:
                problems[plan.node.id] = "offline"
                continue
            if plan.before:
                try:
                    before[plan.node.id] = self._merge(await self._read_all(plan, plan.before))
                except Exception as exc:  # a node that cannot be read first is not touched
                    problems[plan.node.id] = f"read before the command failed: {exc}"
                    continue
            live.append(plan)
        note = ""
        written: list[NodePlan] = []
        found: dict[str, list[dict[str, Number]]] = {}  # read back within the write's own transaction
        broadcastable = (
            len(plans) > 1
            and {p.node.id for p in plans} == self.on_bus
            and all(p.same_writes(plans[0]) for p in plans)
            and all(p.node.id in before for p in plans if p.before)  # a broadcast reaches the unread too
        )
        if broadcastable:
            try:
                for address, words in plans[0].writes_at(self.clock()):
                    await self.bus.broadcast(address, words, priority=URGENT)
            except Exception as exc:  # any bus failure: nothing can be said of any node
                return {p.node.id: f"broadcast failed: {exc}" for p in plans}, ""
            note = f"broadcast on {self.name}"
            written = live
            sent = dict.fromkeys((p.node.id for p in live), time.monotonic())
        else:
            sent = {}

            async def write(plan: NodePlan) -> None:
                try:
                    runs = plan.writes_at(self.clock())
                    if self._fusable(plan, runs):
                        found[plan.node.id] = await self._write_read(plan, runs[0])
                    else:
                        await self._write(plan.node.unit, runs)
                    for address, bits in plan.coils:
                        await self.bus.write_coils(plan.node.unit, address, bits, priority=URGENT)
                except Exception as exc:  # a failed write is that node's problem, not the command's
                    problems[plan.node.id] = f"write failed: {exc}"
                    return
                if plan.repoll:
                    self.bus.request_full_poll(plan.node.unit)
                sent[plan.node.id] = time.monotonic()

            await self._each(write, live)
            written = [p for p in live if p.node.id in sent]

        confirming = time.perf_counter()
        self.write_s = confirming - began

        async def confirm(plan: NodePlan) -> None:
            problem = await self._confirm(plan, before.get(plan.node.id, {}), sent[plan.node.id],
                                          found.get(plan.node.id))
            if problem is None and plan.follow is not None:
                problem = await self._follow(plan.follow(self.clock()))
            if problem:
                problems[plan.node.id] = problem

        await self._each(confirm, written)
        self.confirm_s = time.perf_counter() - confirming
        return problems, note

    async def _each(self, work: Callable[[NodePlan], Awaitable[None]], plans: list[NodePlan]) -> None:
        """``work`` on every plan, :data:`IN_FLIGHT` at a time (in configuration order as they start)."""
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(plan: NodePlan) -> None:
            async with slots:
                await work(plan)

        await asyncio.gather(*(one(p) for p in plans))

    async def _follow(self, step: NodePlan) -> str | None:
        try:
            await self._write(step.node.unit, step.writes_at(self.clock()))
        except Exception as exc:  # the first step is done; say which part is not
            return f"confirmed, but the follow-up write failed: {exc}"
        problem = await self._confirm(step, {}, time.monotonic())
        return None if problem is None else f"confirmed, but then: {problem}"

    async def _write(self, unit: int, writes: list[Run]) -> None:
        for address, words in writes:
            await self.bus.write(unit, address, words, priority=URGENT)

    async def _confirm(self, plan: NodePlan, before: dict[str, Number], sent: float,
                       first: list[dict[str, Number]] | None = None) -> str | None:
        """Read back until the plan's check passes or its settle time is over; None when confirmed.

        ``first``: values already read back with the write (:meth:`_write_read`), judged before any read.
        """
        while True:
            try:
                found = first if first is not None else await self._read_all(plan, plan.reads)
                first = None
                problem = plan.check(Readback(found, before, self.clock(), time.monotonic() - sent))
            except Exception as exc:  # timeouts, exceptions, a closed line: all mean "not confirmed"
                problem = f"read-back failed: {exc}"
            if problem is None or time.monotonic() - sent >= plan.settle:
                return problem
            await asyncio.sleep(plan.every)

    def _fusable(self, plan: NodePlan, runs: list[Run]) -> bool:
        """One run written, one holding block read back plainly: one transaction can carry both."""
        if len(runs) != 1 or plan.coils or len(plan.reads) != 1:
            return False
        read = plan.reads[0]
        return read.table == HOLDING and not read.select and read.unit is None

    async def _write_read(self, plan: NodePlan, run: Run) -> list[dict[str, Number]]:
        read = plan.reads[0]
        start, words = await self.bus.write_read(plan.node.unit, run[0], run[1], read.regmap, priority=URGENT)
        found = {reg.name: raw for reg, raw in read.regmap.decode(HOLDING, start, words)}
        self._remember(plan.node.id, read.regmap, found)
        return [found]

    async def _read_all(self, plan: NodePlan, reads: Sequence[Read]) -> list[dict[str, Number]]:
        node = plan.node
        out: list[dict[str, Number]] = []
        for read in reads:
            await self._write(node.unit, list(read.select))
            start, words = await self.bus.read_table(
                node.unit if read.unit is None else read.unit, read.regmap, read.table, priority=URGENT
            )
            found = {reg.name: raw for reg, raw in read.regmap.decode(read.table, start, words)}
            self._remember(node.id, read.regmap, found)
            out.append(found)
        return out

    @staticmethod
    def _merge(found: list[dict[str, Number]]) -> dict[str, Number]:
        merged: dict[str, Number] = {}
        for values in found:
            merged.update(values)
        return merged

    def _remember(self, node_id: str, regmap: RegisterMap, found: dict[str, Number]) -> None:
        state = self.stats.nodes.get(node_id)
        if state is None or regmap.role != state.role:  # word maps of blocks are not the node's registers
            return
        for reg in regmap.registers:
            if reg.name in found:
                state.values[reg.name] = reg.value(found[reg.name])

    def _online(self, node_id: str) -> bool | None:
        state = self.stats.nodes.get(node_id)
        return None if state is None else state.online
