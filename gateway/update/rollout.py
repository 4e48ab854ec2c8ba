"""Fleet roll-out: one package to many nodes, a canary group first, stopping at the first failure.

The plan is a list of :class:`Target` nodes (id, bus, unit) and the number of
canaries. The canaries are updated one after another; only when every one of
them runs the new image, confirmed, does the rest follow: one node at a time
per bus (a line carries one transfer; polls keep their turn between chunks),
all buses at once. The first node that fails stops the roll-out: transfers
in progress on other buses are cancelled (their nodes keep their old image,
or resume from where they stood at the next roll-out), nodes not yet started
are left alone. With ``stop_on_failure=False`` a failure among the rest is
recorded and the others go on; a failing canary always stops the roll-out
(that is what canaries are for).

Progress goes to ``report(event)`` (the daemon publishes it upstream, the
command line prints it), one dict per step::

    {"command": id, "node": id|None, "phase": "canary"|"rest"|"sending"|"switching"|"confirmed"
     |"failed"|"done"|"stopped", "done": n, "total": n, "detail": text}

``sending`` events come at most every ``every`` bytes per node.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.update.deliver import FileRecordBus, UpdateError, deliver
from gateway.update.package import UpdatePackage

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Target:
    """One node to update: its id, the name of its bus and its unit there."""

    node: str
    bus: str
    unit: int


@dataclass
class Outcome:
    """What a roll-out did: the nodes confirmed, the first that failed (and why), every failure, those left alone."""

    confirmed: list[str] = field(default_factory=list)
    failed: str | None = None
    reason: str = ""
    skipped: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    """Every node that failed, with why (more than one only with ``stop_on_failure=False``)."""

    @property
    def ok(self) -> bool:
        """Every node runs the new image."""
        return not self.failures and not self.skipped


class _Stop(Exception):  # noqa: N818 - internal signal, never escapes
    pass


async def roll_out(
    command_id: str, package: UpdatePackage, targets: Sequence[Target], buses: Mapping[str, FileRecordBus], *,
    canaries: int = 1, report: Report | None = None, every: int = 8192, back_within: float = 120.0,
    stop_on_failure: bool = True,
) -> Outcome:
    """Update ``targets`` with ``package`` as the module docstring says; never raises for a node's failure."""
    say = report or (lambda event: None)
    unknown = sorted({t.bus for t in targets} - set(buses))
    if unknown:
        raise ValueError(f"no bus named {unknown[0]!r}")
    outcome = Outcome()
    pending = list(targets)

    def event(phase: str, node: str | None = None, done: int = 0, total: int = 0, detail: str = "") -> None:
        say({"command": command_id, "node": node, "phase": phase, "done": done, "total": total, "detail": detail})

    async def one(target: Target, canary: bool) -> None:
        last = [-every]

        def progress(phase: str, done: int, total: int) -> None:
            if phase != "sending" or done - last[0] >= every or done == total:
                last[0] = done
                event(phase, target.node, done, total)

        try:
            await deliver(buses[target.bus], target.unit, package, progress=progress, back_within=back_within)
        except UpdateError as exc:
            pending.remove(target)
            if outcome.failed is None:
                outcome.failed, outcome.reason = target.node, str(exc)
            outcome.failures[target.node] = str(exc)
            event("failed", target.node, detail=str(exc))
            if canary or stop_on_failure:
                raise _Stop from exc
            return
        pending.remove(target)  # a transfer cancelled on another line's failure stays pending: not updated
        outcome.confirmed.append(target.node)

    first, rest = list(targets[:canaries]), list(targets[canaries:])
    stopped = False
    try:
        if first:
            event("canary", detail=", ".join(t.node for t in first))
        for target in first:
            await one(target, canary=True)
        if rest:
            event("rest", detail=f"{len(rest)} node(s)")
            lines: dict[str, list[Target]] = {}
            for target in rest:
                lines.setdefault(target.bus, []).append(target)

            async def line(nodes: list[Target]) -> None:
                for target in nodes:
                    await one(target, canary=False)

            async with asyncio.TaskGroup() as group:
                for nodes in lines.values():
                    group.create_task(line(nodes))
    except* _Stop:
        stopped = True
        outcome.skipped = [t.node for t in pending]
        left = ", ".join(outcome.skipped) or "none"
        event("stopped", outcome.failed, detail=f"{outcome.reason}; not updated: {left}")
    if not stopped:
        failed = f"; failed: {', '.join(outcome.failures)}" if outcome.failures else ""
        event("done", done=len(outcome.confirmed), total=len(targets),
              detail=f"{len(outcome.confirmed)} confirmed{failed}")
    return outcome
