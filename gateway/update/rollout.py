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
(that is what canaries are for). Setting ``cancel`` stops it the same way.

A roll-out can be resumed: ``states`` gives each node's :class:`NodeState` as
a :class:`Journal` recorded it before the gateway stopped. Nodes that ended
(confirmed, failed, rolled back) are counted and not touched again (a stored
failure that stops the roll-out stops it at once); the others go on where
they stood (:func:`gateway.update.rollout_node.update_node`).

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
from typing import Any, Protocol

from gateway.update.deliver import FileRecordBus, UpdateError
from gateway.update.package import UpdatePackage

Report = Callable[[dict[str, Any]], None]

ENDED = ("confirmed", "failed", "rolled_back")
"""Node states a resumed roll-out does not touch again."""


@dataclass(frozen=True)
class Target:
    """One node to update: its id, the name of its bus and its unit there."""

    node: str
    bus: str
    unit: int


@dataclass(frozen=True)
class NodeState:
    """Where one node of a roll-out stands (:data:`gateway.update.rollout_store.NODE_STATES`).

    ``slot`` and ``rolled`` are the node's active slot and rollback count read before the update
    began (None before that): they tell a node that switched from one that did not.
    """

    state: str = "pending"
    slot: int | None = None
    rolled: int | None = None
    detail: str = ""


class Journal(Protocol):
    """Where a roll-out records its nodes' steps (the store and the node events of the daemon)."""

    def note(self, target: Target, state: NodeState) -> None:
        """Record ``target``'s new state; returns at once, the records are written in order."""

    async def flush(self) -> None:
        """Wait until every noted state is recorded."""


@dataclass
class Outcome:
    """What a roll-out did: the nodes confirmed, the first that failed (and why), every failure, those left alone."""

    confirmed: list[str] = field(default_factory=list)
    failed: str | None = None
    reason: str = ""
    skipped: list[str] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    """Every node that failed, with why (more than one only with ``stop_on_failure=False``)."""
    cancelled: bool = False
    """Stopped by ``cancel`` (an operator's command), not by a failure."""
    switching: list[str] = field(default_factory=list)
    """Nodes whose commit went out before the roll-out stopped: they confirm, or roll back, on their own."""

    @property
    def ok(self) -> bool:
        """Every node runs the new image."""
        return not self.failures and not self.skipped and not self.switching


class _Stop(Exception):  # noqa: N818 - internal signal, never escapes
    pass


class _Watched:
    """A journal that also remembers each node's last state (to tell, at a stop, who was committing)."""

    def __init__(self, inner: Journal | None, states: Mapping[str, NodeState]) -> None:
        self.inner = inner
        self.last = {node: state.state for node, state in states.items()}

    def note(self, target: Target, state: NodeState) -> None:
        self.last[target.node] = state.state
        if self.inner is not None:
            self.inner.note(target, state)

    async def flush(self) -> None:
        if self.inner is not None:
            await self.inner.flush()


async def roll_out(
    command_id: str, package: UpdatePackage, targets: Sequence[Target], buses: Mapping[str, FileRecordBus], *,
    canaries: int = 1, report: Report | None = None, every: int = 8192, back_within: float = 120.0,
    stop_on_failure: bool = True, journal: Journal | None = None, states: Mapping[str, NodeState] | None = None,
    cancel: asyncio.Event | None = None,
) -> Outcome:
    """Update ``targets`` with ``package`` as the module docstring says; never raises for a node's failure."""
    from gateway.update.rollout_node import update_node  # it uses this module's types

    say = report or (lambda event: None)
    unknown = sorted({t.bus for t in targets} - set(buses))
    if unknown:
        raise ValueError(f"no bus named {unknown[0]!r}")
    outcome = Outcome()
    known = dict(states or {})
    watched = _Watched(journal, known)
    pending = [t for t in targets if known.get(t.node, NodeState()).state not in ENDED]

    def event(phase: str, node: str | None = None, done: int = 0, total: int = 0, detail: str = "") -> None:
        say({"command": command_id, "node": node, "phase": phase, "done": done, "total": total, "detail": detail})

    def failed(target: Target, reason: str, canary: bool) -> None:
        if outcome.failed is None:
            outcome.failed, outcome.reason = target.node, reason
        outcome.failures[target.node] = reason
        if canary or stop_on_failure:
            raise _Stop

    async def one(target: Target, canary: bool) -> None:
        if target not in pending:
            return
        last = [-every]

        def progress(phase: str, done: int, total: int) -> None:
            if phase != "sending" or done - last[0] >= every or done == total:
                last[0] = done
                event(phase, target.node, done, total)

        try:
            await update_node(buses[target.bus], target, package, known.get(target.node, NodeState()), watched,
                              progress=progress, back_within=back_within)
        except UpdateError as exc:
            pending.remove(target)
            event("failed", target.node, detail=str(exc))
            failed(target, str(exc), canary)
            return
        pending.remove(target)  # a transfer cancelled on another line's failure stays pending: not updated
        outcome.confirmed.append(target.node)

    first, rest = list(targets[:canaries]), list(targets[canaries:])

    async def body() -> None:
        if cancel is not None and cancel.is_set():  # cancelled while it waited for another roll-out
            outcome.cancelled = True
            raise _Stop
        for i, target in enumerate(targets):  # what a resumed roll-out finds already ended
            state = known.get(target.node, NodeState())
            if state.state == "confirmed":
                outcome.confirmed.append(target.node)
            elif state.state in ENDED:
                failed(target, state.detail or state.state.replace("_", " "), i < canaries)
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

    async def watch(flag: asyncio.Event) -> None:
        await flag.wait()
        outcome.cancelled = True
        raise _Stop

    stopped = False
    try:
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(watch(cancel)) if cancel is not None else None
            await body()
            if watcher is not None:
                watcher.cancel()
    except* _Stop:
        stopped = True
        outcome.switching = [t.node for t in pending if watched.last.get(t.node) == "committing"]
        outcome.skipped = [t.node for t in pending if t.node not in outcome.switching]
        for target in pending:  # a committing node keeps its state: it finishes on its own
            if target.node not in outcome.switching:
                watched.note(target, NodeState("skipped", detail="the roll-out stopped before this node"))
        left = ", ".join(outcome.skipped) or "none"
        why = "cancelled" if outcome.cancelled and outcome.failed is None else outcome.reason
        event("stopped", None if outcome.cancelled else outcome.failed, detail=f"{why}; not updated: {left}")
    await watched.flush()
    if not stopped:
        failures = f"; failed: {', '.join(outcome.failures)}" if outcome.failures else ""
        event("done", done=len(outcome.confirmed), total=len(targets),
              detail=f"{len(outcome.confirmed)} confirmed{failures}")
    return outcome
