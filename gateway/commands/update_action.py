"""The ``update`` action: a signed roll-out of an update package to nodes, canaries first.

Its parameters (all required: a command never leaves one to a default)::

    {"package": "<64 hex digits>",      # the image's SHA-256: a package in [update] packages
     "canary": ["lamp-1", "group:c"],   # node ids / groups updated and confirmed first ([]: none)
     "stop_on_failure": true}           # false: a failure after the canaries does not stop the rest

The command's ``target`` names every node to update; the canaries must be
among them. Planning (before anything is written) refuses an unknown package
(``unknown_package``), a node of another role than the package's, a node
whose bus cannot carry file records (BLE, Modbus TCP) or a canary outside
the target (``bad_parameters``). Execution is :func:`gateway.update.rollout.roll_out`
on the gateway's own buses, at the update priority (behind polls and other
commands, so polling goes on); roll-outs run one at a time, a second waits
for the first. Each step is published on the result topic as an interim map
with ``status`` ``"running"`` (the final result follows, as for every command)::

    {"id": "c-9", "status": "running", "phase": "sending", "node": "lamp-2",
     "done": 16384, "total": 75776, "detail": "", "ts": 1767225600.5}

``phase`` is one of ``canary``, ``rest``, ``sending``, ``switching``,
``confirmed``, ``failed``, ``stopped``, ``done`` (:mod:`gateway.update.rollout`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from gateway.commands.parse import BAD_PARAMETERS, UNKNOWN_PACKAGE, Command, CommandRejected, Target, parse_target
from gateway.service.config import Config, NodeConfig
from gateway.update.package import PackageError, UpdatePackage
from gateway.update.rollout import Target as RolloutTarget
from gateway.update.rollout import roll_out
from gateway.update.store import PackageStore, UnknownPackage

__all__ = ["RUNNING", "RolloutPlan", "UpdateAction"]

RUNNING = "running"
"""``status`` of the interim progress maps an update publishes on the result topic."""


@dataclass(frozen=True)
class RolloutPlan:
    """An admitted update: the package, the nodes in roll-out order (canaries first) and how many are canaries."""

    package: UpdatePackage
    targets: list[RolloutTarget]
    canaries: int
    stop_on_failure: bool


class UpdateAction:
    """Plans and runs ``update`` commands on the gateway's buses.

    Args:
        config: the gateway configuration (``[update]`` and the nodes).
        buses: the bus adapters by name (the router's, updated in place on reload).
        publish: sends one CBOR map upstream on the result topic; must not block.
        clock: wall clock for the progress maps' ``ts``.
    """

    def __init__(self, config: Config, buses: Mapping[str, Any], publish: Callable[[bytes], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.buses = buses
        self.publish = publish
        self.clock = clock
        self._one_at_a_time = asyncio.Lock()

    def plan(self, command: Command, nodes: list[NodeConfig],
             resolve: Callable[[Target], list[NodeConfig]]) -> RolloutPlan:
        """The roll-out of ``command`` to ``nodes``; CommandRejected (nothing written) when it cannot be done."""
        params = command.params

        def refuse(reason: str, detail: str) -> CommandRejected:
            return CommandRejected(reason, detail, command_id=command.id)

        try:
            package = PackageStore(self.config.update.packages).find(params["package"])
        except UnknownPackage as exc:
            raise refuse(UNKNOWN_PACKAGE, str(exc)) from None
        except PackageError as exc:
            raise refuse(UNKNOWN_PACKAGE, f"the package is unusable: {exc}") from None
        for node in nodes:
            if node.role != package.role:
                raise refuse(BAD_PARAMETERS, f"{node.id} is a {node.role}; the package is a {package.role} image")
            if not hasattr(self.buses.get(node.bus), "file_record"):
                raise refuse(BAD_PARAMETERS, f"{node.id}: bus {node.bus} carries no file records (updates go "
                                             "over Modbus RTU lines only)")
        ids = {n.id for n in nodes}
        canaries: list[NodeConfig] = []
        for text in params["canary"]:
            try:
                target = parse_target(text)
            except ValueError as exc:
                raise refuse(BAD_PARAMETERS, f"canary: {exc}") from None
            if target.kind not in ("node", "group"):
                raise refuse(BAD_PARAMETERS, f"canary {text!r}: name node ids or group:<name>")
            for node in resolve(target):  # CommandRejected(unknown_target) for a name that is none
                if node.id not in ids:
                    raise refuse(BAD_PARAMETERS, f"canary {node.id} is not among the command's targets")
                if node not in canaries:
                    canaries.append(node)
        order = canaries + [n for n in nodes if n not in canaries]
        return RolloutPlan(package, [RolloutTarget(n.id, n.bus, n.unit) for n in order], len(canaries),
                           params["stop_on_failure"])

    async def run(self, command: Command, plan: RolloutPlan) -> tuple[list[str], list[str], str]:
        """Carry out ``plan``: the nodes confirmed, those not updated, and a sentence for the result."""
        def report(event: dict[str, Any]) -> None:
            fields = {k: v for k, v in event.items() if k != "command"}
            self.publish(cbor2.dumps({"id": command.id, "status": RUNNING, **fields, "ts": self.clock()}))

        async with self._one_at_a_time:
            outcome = await roll_out(
                command.id, plan.package, plan.targets, self.buses, canaries=plan.canaries, report=report,
                back_within=self.config.update.confirm_within, stop_on_failure=plan.stop_on_failure,
            )
        what = f"update to {plan.package.digest.hex()[:12]} ({plan.package.role}, {len(plan.package.image)} bytes)"
        missed = list(outcome.failures) + outcome.skipped
        if outcome.ok:
            return outcome.confirmed, [], f"{what} confirmed on {len(outcome.confirmed)} node(s)"
        why = "; ".join(f"{node}: {reason}" for node, reason in list(outcome.failures.items())[:10])
        left = f"; not updated: {', '.join(outcome.skipped)}" if outcome.skipped else ""
        stop = " (stopped)" if outcome.skipped or plan.stop_on_failure else ""
        return outcome.confirmed, missed, f"{what} failed on {len(outcome.failures)} node(s){stop}: {why}{left}"
