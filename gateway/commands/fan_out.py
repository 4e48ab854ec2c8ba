"""An admitted command's node plans carried out bus by bus, the buses at the same time, and summed up.

:func:`carry_out` gives each bus its :class:`~gateway.commands.executor.BusExecutor`
(broadcast where a target covers a whole bus with the same words, node by node
elsewhere, then the confirming reads) and turns what they report into the
fields of the command's result (:meth:`gateway.commands.router.CommandRouter._result`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.commands.actions import AFTERWARDS
from gateway.commands.executor import BusExecutor, CommandBus
from gateway.commands.node_plan import NodePlan
from gateway.commands.parse import Command
from gateway.commands.timing import Timing
from gateway.service.config import NodeConfig
from gateway.service.stats import GatewayStats

__all__ = ["carry_out"]


async def carry_out(command: Command, plans: list[NodePlan], targets: list[NodeConfig],
                    bus: Callable[[str], CommandBus], nodes_on: Callable[[str], set[str]], stats: GatewayStats,
                    clock: Callable[[], float], timing: Timing | None) -> dict[str, Any]:
    """Run ``plans`` (``bus(name)`` the adapter, ``nodes_on(name)`` its node ids); the result's status and fields."""
    by_bus: dict[str, list[NodePlan]] = {}
    for plan in plans:
        by_bus.setdefault(plan.node.bus, []).append(plan)
    executors = [(BusExecutor(bus(name), name, nodes_on(name), stats, clock), bus_plans)
                 for name, bus_plans in by_bus.items()]
    outcomes = await asyncio.gather(*(executor.run(bus_plans) for executor, bus_plans in executors))
    if timing is not None:  # buses work at the same time: the slowest one is the command's
        timing.add("bus", max((e.write_s for e, _ in executors), default=0.0))
        timing.add("readback", max((e.confirm_s for e, _ in executors), default=0.0))
    problems: dict[str, str] = {}
    notes: list[str] = []
    for bus_problems, note in outcomes:
        problems.update(bus_problems)
        if note:
            notes.append(note)
    confirmed = [n.id for n in targets if n.id not in problems]
    unconfirmed = [n.id for n in targets if n.id in problems]
    what = command.describe()
    if not unconfirmed:
        detail = f"{what} confirmed on {len(confirmed)} node(s)"
        if notes:
            detail += f" ({'; '.join(notes)})"
        if command.action in AFTERWARDS:
            detail += f"; {AFTERWARDS[command.action]}"
        return {"status": "done", "detail": detail, "confirmed": confirmed}
    detail = f"{what} not confirmed on {len(unconfirmed)} of {len(targets)} node(s): " + "; ".join(
        f"{node_id}: {problems[node_id]}" for node_id in unconfirmed[:20]
    )
    return {"status": "failed", "detail": detail, "reason": "unconfirmed", "confirmed": confirmed,
            "unconfirmed": unconfirmed}
