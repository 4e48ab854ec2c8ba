"""The command router: from a signed command to a confirmed change on the nodes, recorded and answered.

For each payload on the command topic the router publishes exactly one result on
the result topic (a CBOR map)::

    {"id": "c-0042", "status": "done", "detail": "dim 40% confirmed on 2 node(s)",
     "confirmed": ["lamp-1", "lamp-2"], "unconfirmed": [], "ts": 1767225600.5}

``status`` is ``done`` only when every targeted node was read back holding the
new state; ``failed`` (``reason`` "unconfirmed") lists the nodes that were not;
``rejected`` (``reason`` one of :data:`gateway.commands.parse.REASONS`) means nothing
was written. A payload too broken to show an id gets a result with ``id`` null.

The checks, in order: the envelope (:mod:`gateway.commands.envelope`: signature, key,
command shape, freshness), the target (it must exist), the key's scope
(:mod:`gateway.commands.keys`), the id (:mod:`gateway.commands.replay`: a retry of the same
envelope is answered from memory and not executed again; another command with a
used id is ``replayed``), the nodes' ability to take the action, and at least
one targeted node online. Every step is written to the audit log
(:mod:`gateway.commands.audit`) and the entry is durable before the router acts on it:
the id's claim in the replay store and the ``accepted`` entry before any node is
written, the result and the ``executed`` entry before the result is published
(each pair's two fsyncs run at the same time, in the stores' writer threads).
An executed command's result also carries ``ms``, where its time went
(:class:`~gateway.commands.timing.Timing`).

What each action writes and reads back is planned by :mod:`gateway.commands.actions` and
carried out by :mod:`gateway.commands.fan_out`, with urgent priority on the bus (commands
overtake queued polls); an ``update`` is a roll-out (:mod:`gateway.commands.update_action`,
resumed after a restart) whose chunks wait behind polls.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2

from gateway.commands.actions import Context, plan_node, target_problem
from gateway.commands.audit import AuditLog
from gateway.commands.envelope import Opened, open_envelope
from gateway.commands.executor import CommandBus
from gateway.commands.fan_out import carry_out
from gateway.commands.keys import KeyRing
from gateway.commands.node_plan import NodePlan
from gateway.commands.parse import (
    BAD_PARAMETERS,
    OFFLINE_TARGET,
    OUT_OF_SCOPE,
    REPLAYED,
    UNKNOWN_ACTION,
    Command,
    CommandRejected,
    Target,
)
from gateway.commands.replay import ReplayStore
from gateway.commands.targets import command_targets, resolve_target
from gateway.commands.timing import Timing, durable
from gateway.commands.update_action import NodeEvents, RolloutPlan, UpdateAction
from gateway.contracts import load_role
from gateway.service.config import Config, NodeConfig
from gateway.service.stats import GatewayStats
from gateway.transport.ble_bus import BLE_BUS
from gateway.update.rollout_store import StoredRollout

log = logging.getLogger(__name__)

CONCURRENT = 8
"""Commands executed at the same time; more wait their turn."""
BACKLOG = 1000
"""Command payloads waiting to be handled before new ones are dropped (and counted in the audit log)."""

DONE = "done"
REJECTED = "rejected"
FAILED = "failed"
UNCONFIRMED = "unconfirmed"
"""Reason of a failed command: some targeted nodes could not be confirmed."""
INTERNAL = "internal"
"""Reason of a failed command: the gateway itself failed (a bug, or the audit log not writable)."""

Rebirth = Callable[[list[str]], Awaitable[None]]
"""Republishes the birth certificates of the given node ids (the uplink's business)."""


class CommandRouter:
    """Verifies, executes, records and answers commands.

    Args:
        config: the gateway configuration (nodes, groups, buses, keys, [commands]).
        buses: the bus adapters by bus name.
        stats: live state (node online flags are read, results recorded).
        publish_result: sends one CBOR-encoded result upstream; must not block.
        publish_audit: sends one CBOR-encoded audit entry upstream; must not block.
        rebirth: republishes birth certificates (the ``rebirth`` action); None
            refuses that action.
        ble_bus: the BLE nodes' bus (:class:`~gateway.transport.ble_bus.GattBus`); None: they are no targets.
        node_events: stores roll-out steps as node events (:class:`~gateway.commands.update_action.UpdateAction`).
        clock: wall clock for freshness checks and timestamps.

    Roll-outs the gateway was running when it stopped are resumed by :meth:`run`.
    """

    def __init__(
        self,
        config: Config,
        buses: dict[str, Any],
        stats: GatewayStats,
        publish_result: Callable[[bytes], None],
        *,
        publish_audit: Callable[[bytes], None] | None = None,
        rebirth: Rebirth | None = None,
        ble_bus: CommandBus | None = None,
        node_events: NodeEvents | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.buses: dict[str, CommandBus] = buses
        self.ble_bus = ble_bus
        self.stats = stats
        self.publish_result = publish_result
        self.rebirth = rebirth
        self.clock = clock
        self.keys = KeyRing(config)
        # Progress goes on the result topic; roll-outs to resume keep their ids running in the replay store.
        self.updates = UpdateAction(config, buses, publish_result, clock, node_events, getattr(ble_bus, "sender", None))
        self.replay = ReplayStore(config.commands.replay_db, now=clock(),
                                  resuming={r.id for r in self.updates.resumable})
        self.audit = AuditLog(config.commands.audit_log, publish=publish_audit, clock=clock)
        self._inbox: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue(BACKLOG)
        self._dropped = 0
        self._nodes = command_targets(config, ble=ble_bus is not None)
        if not config.key:
            log.warning("no [[key]] configured: every command will be refused")

    def reconfigure(self, config: Config) -> list[str]:
        """Take a reloaded configuration: nodes, groups, keys and freshness rules apply at once.

        Returns notes for settings read only at start (the replay database and
        audit log paths). A key removed from the configuration is refused from
        the next command on.
        """
        notes = [
            f"commands.{name} changed: takes effect after a restart"
            for name in ("replay_db", "audit_log")
            if getattr(self.config.commands, name) != getattr(config.commands, name)
        ]
        self.config = self.updates.config = config
        self._nodes = command_targets(config, ble=self.ble_bus is not None)
        self.keys = KeyRing(config)
        return notes

    def close(self) -> None:
        """Flush the audit log and close the replay and roll-out stores."""
        self.audit.close()
        self.replay.close()
        self.updates.close()

    def submit(self, payload: bytes) -> None:
        """Accept a command payload for handling by :meth:`run`; never raises, never blocks."""
        try:
            self._inbox.put_nowait((payload, time.perf_counter()))
        except asyncio.QueueFull:
            self._dropped += 1
            log.warning("command backlog full (%d): payload dropped", BACKLOG)

    async def run(self) -> None:
        """Resume the stored roll-outs, then handle submitted payloads until cancelled, up to CONCURRENT at a time."""
        slots = asyncio.Semaphore(CONCURRENT)
        async with asyncio.TaskGroup() as group:
            for stored in self.updates.resumable:  # in their order: they take the roll-out lock first
                group.create_task(self._resume(stored))
            self.updates.resumable = []
            while True:
                payload, received = await self._inbox.get()
                if self._dropped:
                    self.audit.append("dropped", count=self._dropped, detail="command backlog full")
                    self._dropped = 0
                await slots.acquire()
                group.create_task(self._handle_in_slot(payload, received, slots))

    async def _handle_in_slot(self, payload: bytes, received: float, slots: asyncio.Semaphore) -> None:
        try:
            await self.handle(payload, received)
        finally:
            slots.release()

    async def handle(self, payload: bytes, received: float | None = None) -> dict[str, Any] | None:
        """Handle one payload end to end and publish its result (None while the same command still runs).

        ``received`` (``time.perf_counter()`` at arrival) starts the result's ``ms`` breakdown
        (:class:`~gateway.commands.timing.Timing`). Never raises (except cancellation).
        """
        timing = Timing(received)
        now = self.clock()
        try:
            opened = self._admit(payload, now)
        except CommandRejected as exc:
            return await self._refuse(payload, exc)
        if opened is None:
            return None
        if isinstance(opened, dict):  # a retry: answered from memory
            return self._publish(opened)
        command, plans, claimed = opened
        timing.lap("verify")

        async def execute() -> dict[str, Any]:
            # The claim and the accepted entry are both durable before any node is touched; their two
            # fsyncs (replay store, audit log) run in their own threads at the same time.
            accepted = self.audit.append(
                "accepted", id=command.id, key=plans.key_id, target=str(command.target),
                action=command.action, params=dict(command.params), iat=int(command.iat), exp=int(command.exp),
                digest=plans.digest.hex(), envelope=base64.b64encode(payload).decode(),
            )
            await durable(claimed, accepted)
            timing.lap("durable")
            return await self._execute(command, plans, timing)

        return await self._conclude(command.id, execute(), timing)

    async def _resume(self, stored: StoredRollout) -> None:
        """Go on with a roll-out cut short by a gateway stop: same id, same result topic, then its one result."""
        self.audit.append("resumed", id=stored.id, action="update", detail=f"{len(stored.targets)} node(s)")
        log.info("command %s: resuming its roll-out", stored.id)

        async def execute() -> dict[str, Any]:
            return self._result(stored.id, **(await self.updates.resume(stored)).fields())

        await self._conclude(stored.id, execute(), Timing(None))

    async def _conclude(self, command_id: str, work: Awaitable[dict[str, Any]], timing: Timing) -> dict[str, Any]:
        """Execute (``work``), record the result (replay store, audit log), then publish it."""
        try:
            result = await work
        except (OSError, sqlite3.Error) as exc:
            where = _store(exc)
            log.error("command %s: %s not writable (%s): not executed", command_id, where, exc)
            result = self._result(command_id, FAILED, f"{where} not writable ({exc}); not executed", reason=INTERNAL)
        except Exception as exc:  # a bug must cost one command, never the gateway
            log.exception("command %s: internal error", command_id)
            result = self._result(command_id, FAILED, f"internal error: {exc}", reason=INTERNAL)
        finished = self.replay.finish(command_id, dict(result))  # a retry is answered without this run's ms
        executed = self.audit.append(
            "executed", id=command_id, status=result["status"], reason=result.get("reason"),
            detail=result["detail"], confirmed=result["confirmed"], unconfirmed=result["unconfirmed"],
        )
        try:
            await durable(finished, executed)  # both before the result is published
        except (OSError, sqlite3.Error) as exc:
            log.error("command %s: %s not writable (%s)", command_id, _store(exc), exc)
        timing.lap("record")
        result["ms"] = timing.breakdown()
        return self._publish(result)

    def _admit(
        self, payload: bytes, now: float
    ) -> tuple[Command, _Plans, concurrent.futures.Future[None]] | dict[str, Any] | None:
        """Every check before execution, without awaiting (so a duplicate cannot slip in between).

        Returns the command, its plans and the claim of its id (a future: durable
        when done), a stored result for a retry, or None for a retry of a
        command still running.
        """
        cmds = self.config.commands
        opened = open_envelope(payload, self.keys, now=now, skew=cmds.clock_skew, max_lifetime=cmds.max_lifetime)
        command = opened.command
        cid = command.id
        try:
            nodes = self.resolve(command.target)
        except CommandRejected as exc:
            exc.command_id = cid
            raise
        problem = opened.key.scope_problem(command.action, nodes)
        if problem:
            raise CommandRejected(OUT_OF_SCOPE, problem, command_id=cid)
        seen = self.replay.lookup(cid)
        if seen is not None:
            if seen.digest != opened.digest:
                raise CommandRejected(
                    REPLAYED, f"id {cid!r} was already used by another command; nothing executed", command_id=cid
                )
            self.audit.append("duplicate", id=cid, key=opened.key.id, digest=opened.digest.hex())
            if seen.result is None:
                log.info("command %s: duplicate while still running; its result will follow", cid)
                return None
            log.info("command %s: duplicate; publishing its result again", cid)
            return seen.result
        plans = self._plan(opened, nodes, now)
        offline = [n.id for n in nodes if self._online(n.id) is False]
        if len(offline) == len(nodes) and plans.cancel is None:  # a cancel writes to no node
            raise CommandRejected(OFFLINE_TARGET, f"offline: {', '.join(offline)}", command_id=cid)
        claimed = self.replay.claim(cid, opened.digest, opened.key.id, command.exp, now)
        return command, plans, claimed

    def _plan(self, opened: Opened, nodes: list[NodeConfig], now: float) -> _Plans:
        command = opened.command
        plans = _Plans(opened.key.id, opened.digest, nodes)
        if command.action == "rebirth":
            if self.rebirth is None:
                raise CommandRejected(
                    UNKNOWN_ACTION, "rebirth is not available: this gateway publishes no birth certificates",
                    command_id=command.id,
                )
            return plans
        if command.action == "update":
            plans.rollout = self.updates.plan(command, nodes, self.resolve)
            return plans
        if command.action == "cancel_update":
            plans.cancel = self.updates.plan_cancel(command, nodes)
            return plans
        problem = target_problem(command)
        if problem:
            raise CommandRejected(BAD_PARAMETERS, problem, command_id=command.id)
        for node in nodes:
            state = self.stats.nodes.get(node.id)
            ctx = Context(state.values if state is not None else None, self.config.nodes_on(node.bus))
            plans.nodes.append(plan_node(command, node, load_role(node.role), now, ctx))
        return plans

    async def _execute(self, command: Command, plans: _Plans, timing: Timing | None = None) -> dict[str, Any]:
        if command.action == "rebirth":
            assert self.rebirth is not None
            ids = [n.id for n in plans.targets]
            await self.rebirth(ids)
            return self._result(command.id, DONE, f"rebirth requested for {len(ids)} node(s)", confirmed=ids)
        if plans.rollout is not None:
            return self._result(command.id, **(await self.updates.run(command, plans.rollout)).fields())
        if plans.cancel is not None:
            return self._result(command.id, DONE, await self.updates.cancel(plans.cancel, command.id),
                                confirmed=[n.id for n in plans.targets])
        def bus(name: str) -> CommandBus:
            return self.ble_bus if name == BLE_BUS and self.ble_bus else self.buses[name]

        return self._result(command.id, **await carry_out(
            command, plans.nodes, plans.targets, bus, lambda name: {n.id for n in self.config.nodes_on(name)},
            self.stats, self.clock, timing))

    def resolve(self, target: Target) -> list[NodeConfig]:
        """The configured nodes a target names, in configuration order; CommandRejected if none."""
        return resolve_target(self.config, self._nodes, target)

    def _online(self, node_id: str) -> bool | None:
        state = self.stats.nodes.get(node_id)
        return None if state is None else state.online

    async def _refuse(self, payload: bytes, exc: CommandRejected) -> dict[str, Any]:
        result = self._result(exc.command_id, REJECTED, exc.detail, reason=exc.reason)
        try:
            await self.audit.record(
                "refused", id=exc.command_id, reason=exc.reason, detail=exc.detail, size=len(payload),
                envelope=base64.b64encode(payload[:8192]).decode(),
            )
        except OSError as err:
            log.error("audit log not writable (%s)", err)
        return self._publish(result)

    def _result(self, command_id: str | None, status: str, detail: str, *, reason: str | None = None,
                confirmed: list[str] | None = None, unconfirmed: list[str] | None = None) -> dict[str, Any]:
        result: dict[str, Any] = {"id": command_id, "status": status}
        if reason is not None:
            result["reason"] = reason
        result["detail"] = detail
        result["confirmed"] = confirmed or []
        result["unconfirmed"] = unconfirmed or []
        result["ts"] = self.clock()
        return result

    def _publish(self, result: dict[str, Any]) -> dict[str, Any]:
        self.stats.commands[result["status"]] += 1
        self.stats.recent_results.append(result)
        level = logging.INFO if result["status"] == DONE else logging.WARNING
        log.log(level, "command %s %s: %s", result["id"], result["status"], result["detail"])
        self.publish_result(cbor2.dumps(result))
        return result


class _Plans:
    """An admitted command's execution plan: the signing key, envelope digest, targets and node plans."""

    __slots__ = ("cancel", "digest", "key_id", "nodes", "rollout", "targets")

    def __init__(self, key_id: str, digest: bytes, targets: list[NodeConfig]) -> None:
        self.key_id = key_id
        self.digest = digest
        self.targets = targets
        self.nodes: list[NodePlan] = []
        self.rollout: RolloutPlan | None = None
        self.cancel: str | None = None
        """The id of the roll-out a ``cancel_update`` stops."""


def _store(exc: BaseException) -> str:
    return str(getattr(exc, "store", "replay store" if isinstance(exc, sqlite3.Error) else "audit log"))
