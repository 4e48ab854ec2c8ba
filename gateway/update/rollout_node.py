"""One node of a roll-out: its update from where it stands, each step recorded in the roll-out's journal.

Steps, as :class:`~gateway.update.rollout.NodeState` states and node events:
``started`` (with the node's active slot and rollback count, recorded before
anything is written to it), ``transferred`` (the whole image is on the node),
``committing`` (the commit is sent: the node checks, switches and resets;
its event is ``committed``), then ``confirmed``, or ``failed`` / ``rolled_back``
with the reason.

Resumed after a gateway stop, a node that was ``started`` or ``transferred``
is asked where it stands: one that switched meanwhile (its active slot is no
longer the recorded one) is only watched until it confirms, as is every node
that was ``committing`` (it is checked, never sent the image again); one that
rolled back is a failure; the others resume their transfer where the node's
status says (:func:`gateway.update.deliver.deliver`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.transport.bus import BusError
from gateway.update.deliver import (
    FileRecordBus,
    Progress,
    UpdateError,
    UpdateRolledBack,
    await_confirmation,
    deliver,
    node_status,
)
from gateway.update.package import UpdatePackage
from gateway.update.rollout import Journal, NodeState, Target

__all__ = ["update_node"]

_IN_PROGRESS = ("started", "transferred", "committing")
_STATUS_ATTEMPTS = 5


async def update_node(bus: FileRecordBus, target: Target, package: UpdatePackage, state: NodeState,
                      journal: Journal | None, *, progress: Progress, back_within: float) -> None:
    """Update ``target`` from ``state``; raises UpdateError (UpdateRolledBack included) when it does not confirm."""
    size = len(package.image)
    reached = [state.state]
    slot, rolled = state.slot, state.rolled

    def step(new: NodeState) -> None:
        reached.append(new.state)
        if journal is not None:
            journal.note(target, new)

    try:
        if state.state in _IN_PROGRESS and slot is not None and rolled is not None:
            # A committing node is only watched: it may be resetting into the new image right now.
            status = None if state.state == "committing" else await _status(bus, target.unit)
            if status is not None and status["rolled_back"] > rolled:
                raise UpdateRolledBack(f"unit {target.unit} ran the new image but rolled back to its old one")
            if status is None or status["active"] != slot:
                if state.state != "committing":
                    step(NodeState("committing", slot, rolled, "switched while the gateway was away"))
                await await_confirmation(bus, target.unit, slot, rolled, back_within=back_within,
                                         progress=progress, size=size)
                step(NodeState("confirmed", slot, rolled))
                return
        else:
            status = await _status(bus, target.unit)
            slot, rolled = status["active"], status["rolled_back"]
            step(NodeState("started", slot, rolled))
        if journal is not None:
            await journal.flush()  # the slot is on disk before the node is written to

        def watch(phase: str, done: int, total: int) -> None:
            if "transferred" not in reached and (phase == "switching" or (phase == "sending" and done >= total)):
                step(NodeState("transferred", slot, rolled))
            if phase == "switching":
                step(NodeState("committing", slot, rolled))
            progress(phase, done, total)

        await deliver(bus, target.unit, package, progress=watch, back_within=back_within)
        step(NodeState("confirmed", slot, rolled))
    except UpdateRolledBack as exc:
        step(NodeState("rolled_back", slot, rolled, str(exc)))
        raise
    except UpdateError as exc:
        step(NodeState("failed", slot, rolled, str(exc)))
        raise
    finally:
        if journal is not None:
            await journal.flush()


async def _status(bus: FileRecordBus, unit: int) -> dict[str, Any]:
    """The node's update status, read again while the bus fails (a node may be resetting)."""
    for attempt in range(_STATUS_ATTEMPTS):
        try:
            return await node_status(bus, unit)
        except BusError as exc:
            last = exc
        await asyncio.sleep(0.2 * (attempt + 1))
    raise UpdateError(f"unit {unit}: could not read its status: {last}") from last
