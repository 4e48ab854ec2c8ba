"""The ``update`` action: a signed roll-out of an update package to nodes, canaries first; and its cancellation.

Its parameters (all required: a command never leaves one to a default)::

    {"package": "<64 hex digits>",      # the image's SHA-256: a package in [update] packages
     "canary": ["lamp-1", "group:c"],   # node ids / groups updated and confirmed first ([]: none)
     "stop_on_failure": true}           # false: a failure after the canaries does not stop the rest

The command's ``target`` names every node to update; the canaries must be
among them. Planning (before anything is written) refuses an unknown package
(``unknown_package``), a node of another role than the package's, a node
whose bus cannot carry file records (Modbus TCP) or a canary outside
the target (``bad_parameters``). Execution is :func:`gateway.update.rollout.roll_out`
on the gateway's own buses, at the update priority (behind polls and other
commands, so polling goes on); BLE nodes are one more line of it, each node
over its own GATT session in turn (:class:`gateway.update.ble_deliver.GattLine`,
within the GATT client's connection budget); roll-outs run one at a time, a
second waits for the first. Each step is published on the result topic as an interim map
with ``status`` ``"running"`` (the final result follows, as for every command)::

    {"id": "c-9", "status": "running", "phase": "sending", "node": "lamp-2",
     "done": 16384, "total": 75776, "detail": "", "ts": 1767225600.5}

``phase`` is one of ``canary``, ``rest``, ``sending``, ``switching``,
``confirmed``, ``failed``, ``stopped``, ``done`` (:mod:`gateway.update.rollout`);
each node's steps also go out as its events (:mod:`gateway.update.rollout_events`).

The plan and every node's state are kept in the roll-out store
(:mod:`gateway.update.rollout_store`) before any node is written to: a
roll-out cut short by a gateway stop or crash is resumed at the next start,
under the same command id, where each node stood (:meth:`UpdateAction.resume`).

``cancel_update`` (``{"rollout": "<the update's id>"}``) stops a running
roll-out: durably first (it is not resumed after a restart), then transfers
in progress end (their nodes keep their old image), nodes not started are
left alone, and a node already committing finishes on its own. The roll-out's
result is ``failed`` with reason ``cancelled``; the cancel's own result lists
what the roll-out confirmed and what it left alone.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import cbor2

from gateway.commands.parse import BAD_PARAMETERS, UNKNOWN_PACKAGE, Command, CommandRejected, Target, parse_target
from gateway.service.config import Config, NodeConfig
from gateway.transport.ble_bus import BLE_BUS, command_nodes
from gateway.transport.ble_client import GattSender
from gateway.update.ble_deliver import GattLine
from gateway.update.package import PackageError, UpdatePackage
from gateway.update.rollout import NodeState, Outcome, roll_out
from gateway.update.rollout import Target as RolloutTarget
from gateway.update.rollout_events import RolloutStep
from gateway.update.rollout_journal import RolloutJournal
from gateway.update.rollout_store import (
    CANCELLED,
    FINISHED,
    RolloutStore,
    RolloutStoreWriteError,
    StoredRollout,
    rollouts_path,
)
from gateway.update.store import PackageStore, UnknownPackage

__all__ = ["CANCELLED_REASON", "RUNNING", "NodeEvents", "Ran", "RolloutPlan", "UpdateAction"]

log = logging.getLogger(__name__)

RUNNING = "running"
"""``status`` of the interim progress maps an update publishes on the result topic."""
CANCELLED_REASON = "cancelled"
"""Reason of the failed result of a roll-out stopped by ``cancel_update``."""

NodeEvents = Callable[[NodeConfig, Sequence[RolloutStep], None], Awaitable[None]]
"""Stores a node's events durably (:meth:`gateway.delivery.driver.Delivery.record_events`)."""


@dataclass(frozen=True)
class RolloutPlan:
    """An admitted update: the package, the nodes in roll-out order (canaries first) and how many are canaries."""

    package: UpdatePackage
    targets: list[RolloutTarget]
    canaries: int
    stop_on_failure: bool


@dataclass
class _Live:
    """A roll-out in this process: the flag that cancels it and what it came to."""

    nodes: frozenset[str]
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Future[str] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Ran(NamedTuple):
    """A roll-out's end: nodes confirmed, nodes not updated, a sentence, the reason of a failure (None: done)."""

    confirmed: list[str]
    missed: list[str]
    detail: str
    reason: str | None

    def fields(self) -> dict[str, Any]:
        """The command result's fields (``status`` and on)."""
        return {"status": "failed" if self.reason else "done", "detail": self.detail, "reason": self.reason,
                "confirmed": self.confirmed, "unconfirmed": self.missed}


class UpdateAction:
    """Plans, runs, resumes and cancels ``update`` commands on the gateway's buses.

    Args:
        config: the gateway configuration (``[update]``, ``[commands] replay_db`` and the nodes).
        buses: the bus adapters by name (the router's, updated in place on reload).
        publish: sends one CBOR map upstream on the result topic; must not block.
        clock: wall clock for the progress maps' ``ts`` and the node events.
        node_events: stores the nodes' roll-out steps as their events (None: the steps go on the result
            topic only).

    Raises RolloutStoreError when the roll-out store beside ``replay_db`` is no such store.
    """

    def __init__(self, config: Config, buses: Mapping[str, Any], publish: Callable[[bytes], None],
                 clock: Callable[[], float] = time.time, node_events: NodeEvents | None = None,
                 ble_sender: GattSender | None = None) -> None:
        self.config = config
        self.buses = buses
        self.ble_sender = ble_sender
        self.publish = publish
        self.clock = clock
        self.node_events = node_events
        self._one_at_a_time = asyncio.Lock()
        self.store = RolloutStore(rollouts_path(config.commands.replay_db), now=clock())
        self.resumable: list[StoredRollout] = self.store.running()
        """The roll-outs the gateway was running when it stopped (resumed by the router at start)."""
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rollout-writer")
        self._live: dict[str, _Live] = {}

    def close(self) -> None:
        """Finish the queued writes and close the roll-out store."""
        self._writer.shutdown(wait=True)
        self.store.close()

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
            if node.bus == BLE_BUS and self.ble_sender is not None:
                continue  # over GATT, one node at a time (gateway.update.ble_deliver.GattLine)
            if not hasattr(self.buses.get(node.bus), "file_record"):
                raise refuse(BAD_PARAMETERS, f"{node.id}: bus {node.bus} carries no file records (updates go "
                                             "over Modbus RTU lines and BLE GATT)")
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

    def plan_cancel(self, command: Command, nodes: list[NodeConfig]) -> str:
        """The roll-out ``cancel_update`` stops; CommandRejected when none such runs or the target misses a node."""
        rollout = command.params["rollout"]
        live = self._live.get(rollout)
        if live is None or live.ended.done():
            raise CommandRejected(BAD_PARAMETERS, f"no roll-out {rollout!r} is running on this gateway",
                                  command_id=command.id)
        outside = sorted(live.nodes - {n.id for n in nodes})
        if outside:
            raise CommandRejected(BAD_PARAMETERS, f"roll-out {rollout!r} also updates {', '.join(outside[:5])}: the "
                                                  "target must name every node of it", command_id=command.id)
        return str(rollout)

    async def cancel(self, rollout: str, by: str) -> str:
        """Stop roll-out ``rollout`` (durably first) and wait until it has; a sentence saying what it left."""
        live = self._live.get(rollout)
        if live is None:  # it ended between the cancel's planning and now
            return f"roll-out {rollout} had already ended: nothing cancelled"
        await self._call(self.store.end, rollout, CANCELLED, f"cancelled by {by}", self.clock())
        live.cancel.set()
        return await asyncio.shield(live.ended)

    async def run(self, command: Command, plan: RolloutPlan) -> Ran:
        """Carry out ``plan``, stored first so that a gateway stop does not end it; see :data:`Ran`."""
        number = await self._call(self.store.begin, command.id, plan.package.digest.hex(), plan.targets,
                                  plan.canaries, plan.stop_on_failure, self.clock())
        return await self._roll(command.id, number, plan, {})

    async def resume(self, stored: StoredRollout) -> Ran:
        """Go on with a roll-out the gateway was running when it stopped, where each node stood."""
        try:
            package = PackageStore(self.config.update.packages).find(stored.package)
        except PackageError as exc:
            detail = f"roll-out not resumed: its package is gone or unusable ({exc})"
            await self._call(self.store.end, stored.id, FINISHED, detail, self.clock())
            left = [t.node for t in stored.targets if stored.nodes[t.node].state != "confirmed"]
            return Ran([t.node for t in stored.targets if t.node not in left], left, detail, "unconfirmed")
        plan = RolloutPlan(package, stored.targets, stored.canaries, stored.stop_on_failure)
        return await self._roll(stored.id, stored.number, plan, stored.nodes)

    async def _roll(self, cid: str, number: int, plan: RolloutPlan, states: Mapping[str, NodeState]) -> Ran:
        live = self._live[cid] = _Live(frozenset(t.node for t in plan.targets))

        def report(event: dict[str, Any]) -> None:
            fields = {k: v for k, v in event.items() if k != "command"}
            self.publish(cbor2.dumps({"id": cid, "status": RUNNING, **fields, "ts": self.clock()}))

        digest = plan.package.digest.hex()
        journal = RolloutJournal(self.store, number, cid, digest, self._record, self._writer, self.clock)
        buses, ble_line, unknown = self._lines(plan.targets)
        try:
            if unknown:  # a resumed roll-out whose bus or BLE node a changed configuration no longer has
                outcome = Outcome(skipped=[t.node for t in plan.targets], reason=f"{unknown} in the configuration")
            else:
                async with self._one_at_a_time:
                    outcome = await roll_out(
                        cid, plan.package, plan.targets, buses, canaries=plan.canaries, report=report,
                        back_within=self.config.update.confirm_within, stop_on_failure=plan.stop_on_failure,
                        journal=journal, states=states, cancel=live.cancel,
                    )
            ran = self._sentence(plan, outcome)
            try:
                await self._call(self.store.end, cid, CANCELLED if outcome.cancelled else FINISHED, ran.detail,
                                 self.clock())
            except RolloutStoreWriteError as exc:  # what the nodes did stands; only its end is not stored
                log.error("roll-out %s: its end not recorded (%s)", cid, exc)
                ran = ran._replace(detail=f"{ran.detail}; its end is not recorded ({exc}): the next start takes "
                                          "it up again")
        except asyncio.CancelledError:  # the gateway stops: the roll-out stays running in the store
            live.ended.cancel()
            raise
        except Exception as exc:
            live.ended.set_result(f"the roll-out failed: {exc}")
            raise
        else:
            live.ended.set_result(ran.detail)
        finally:
            del self._live[cid]
            if ble_line is not None:
                await ble_line.close()
        return ran

    def _lines(self, targets: Sequence[RolloutTarget]) -> tuple[dict[str, Any], GattLine | None, str]:
        """The buses a roll-out of ``targets`` runs on (its BLE nodes as one :class:`GattLine`), and what the
        configuration lacks ("" when nothing)."""
        buses = dict(self.buses)
        ble = [t for t in targets if t.bus == BLE_BUS]
        unknown = sorted({t.bus for t in targets if t.bus != BLE_BUS} - set(buses))
        if unknown:
            return buses, None, f"no bus named {unknown[0]!r}"
        if not ble:
            return buses, None, ""
        known = {n.id: n for n in self.config.ble.node}
        gone = [t.node for t in ble if t.node not in known]
        if self.ble_sender is None or gone:
            return buses, None, f"no BLE node {gone[0]!r}" if gone else "no BLE radio"
        line = buses[BLE_BUS] = GattLine(self.ble_sender, {t.unit: known[t.node] for t in ble})
        return buses, line, ""

    def _sentence(self, plan: RolloutPlan, outcome: Outcome) -> Ran:
        what = f"update to {plan.package.digest.hex()[:12]} ({plan.package.role}, {len(plan.package.image)} bytes)"
        missed = list(outcome.failures) + outcome.switching + outcome.skipped
        if outcome.ok:
            return Ran(outcome.confirmed, [], f"{what} confirmed on {len(outcome.confirmed)} node(s)", None)
        left = f"; not updated: {', '.join(outcome.skipped)}" if outcome.skipped else ""
        if outcome.switching:
            left = f"; committed, confirming on their own: {', '.join(outcome.switching)}{left}"
        if outcome.cancelled:
            return Ran(outcome.confirmed, missed, f"{what} cancelled; confirmed: "
                       f"{', '.join(outcome.confirmed) or 'none'}{left}", CANCELLED_REASON)
        if not outcome.failures:
            return Ran(outcome.confirmed, missed, f"{what} not carried out: {outcome.reason}{left}", "unconfirmed")
        why = "; ".join(f"{node}: {reason}" for node, reason in list(outcome.failures.items())[:10])
        stop = " (stopped)" if outcome.skipped or plan.stop_on_failure else ""
        return Ran(outcome.confirmed, missed, f"{what} failed on {len(outcome.failures)} node(s){stop}: {why}{left}",
                   "unconfirmed")

    async def _record(self, node_id: str, steps: Sequence[RolloutStep]) -> None:
        node = next((n for n in [*self.config.node, *command_nodes(self.config.ble)] if n.id == node_id), None)
        if self.node_events is None or node is None:
            return  # no outbox (tests), or a node a reload removed: its steps stay on the result topic
        await self.node_events(node, steps, None)

    async def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._writer, fn, *args)
        except sqlite3.Error as exc:  # named as the roll-out store's, not the replay store's
            raise RolloutStoreWriteError(f"{self.store.path}: {exc}") from exc
