"""The command router: from a command payload to a confirmed change on the nodes, and a result.

For each payload on the command topic the router publishes exactly one result on
the result topic (a CBOR map)::

    {"id": "c-0042", "status": "done", "detail": "dim 40% confirmed on 2 node(s)",
     "confirmed": ["lamp-1", "lamp-2"], "unconfirmed": [], "ts": 1767225600.5}

``status`` is ``done`` only when every targeted node was read back holding the
new value; ``failed`` (``reason`` "unconfirmed") lists the nodes that were not;
``rejected`` (``reason`` one of the codes in :mod:`gateway.commands`) means
nothing was written. A payload that cannot be read at all gets a rejected result
with ``id`` null.

How a command reaches the nodes: one node is written directly (function 16). A
group, a bus or ``all`` is broadcast (unit 0) on every bus where it covers all
the configured nodes, and written node by node elsewhere; then every targeted
node is read back. Broadcasting assumes the configuration lists every device on
the bus. Commands use the bus with urgent priority, so they overtake queued polls.

A command id seen among the last :data:`REMEMBER` commands is not executed
again: its earlier result is published once more (if it is still running, its
result will follow). Commands rejected while parsing are not remembered, so a
corrected command may reuse the id.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import cbor2

from gateway.commands import (
    BAD_PARAMETERS,
    OFFLINE_TARGET,
    UNKNOWN_TARGET,
    Command,
    CommandRejected,
    Target,
    parse_command,
)
from gateway.config import Config, NodeConfig
from gateway.contracts import HOLDING, Number, Register, load_role
from gateway.modbus_bus import BusError, ModbusBus
from gateway.priority_lock import URGENT
from gateway.stats import GatewayStats

log = logging.getLogger(__name__)

REMEMBER = 1000
"""How many command ids (and their results) the router remembers."""
CONCURRENT = 8
"""Commands executed at the same time; more wait their turn."""
BACKLOG = 1000
"""Command payloads waiting to be handled before new ones are refused."""

DONE = "done"
REJECTED = "rejected"
FAILED = "failed"
UNCONFIRMED = "unconfirmed"
"""Reason of a failed command: some targeted nodes could not be confirmed."""

_REGISTER = {"dim": "dim_level", "switch": "relay"}


class _Step:
    """What to write to one node: the register and its raw value."""

    __slots__ = ("node", "raw", "reg")

    def __init__(self, node: NodeConfig, reg: Register, raw: Number) -> None:
        self.node = node
        self.reg = reg
        self.raw = raw


class CommandRouter:
    """Parses, executes and answers commands.

    Args:
        config: the gateway configuration (nodes, groups, buses).
        buses: the bus adapters by bus name.
        stats: live state (node online flags are read, results recorded).
        publish_result: sends one CBOR-encoded result upstream; must not block.
        clock: wall clock for result timestamps.
    """

    def __init__(
        self,
        config: Config,
        buses: dict[str, ModbusBus],
        stats: GatewayStats,
        publish_result: Callable[[bytes], None],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.buses = buses
        self.stats = stats
        self.publish_result = publish_result
        self.clock = clock
        self._inbox: asyncio.Queue[bytes] = asyncio.Queue(BACKLOG)
        self._results: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self._nodes = {n.id: n for n in config.node}

    def submit(self, payload: bytes) -> None:
        """Accept a command payload for handling by :meth:`run`; never raises, never blocks."""
        try:
            self._inbox.put_nowait(payload)
        except asyncio.QueueFull:
            log.warning("command backlog full (%d): payload dropped", BACKLOG)

    async def run(self) -> None:
        """Handle submitted payloads until cancelled, up to CONCURRENT at a time."""
        slots = asyncio.Semaphore(CONCURRENT)
        async with asyncio.TaskGroup() as group:
            while True:
                payload = await self._inbox.get()
                await slots.acquire()
                group.create_task(self._handle_in_slot(payload, slots))

    async def _handle_in_slot(self, payload: bytes, slots: asyncio.Semaphore) -> None:
        try:
            await self.handle(payload)
        finally:
            slots.release()

    async def handle(self, payload: bytes) -> dict[str, Any] | None:
        """Handle one payload end to end and publish its result; returns the result.

        Returns None (and publishes nothing) when a command with the same id is
        still running. Never raises (except cancellation).
        """
        try:
            command = parse_command(payload)
        except CommandRejected as exc:
            return self._publish(self._rejected(exc.command_id, exc))
        if command.id in self._results:
            earlier = self._results[command.id]
            if earlier is None:
                log.info("command %s: duplicate while still running; its result will follow", command.id)
                return None
            log.info("command %s: duplicate; publishing its result again", command.id)
            self.publish_result(cbor2.dumps(earlier))
            return earlier
        self._remember(command.id, None)
        try:
            result = await self._execute(command)
        except CommandRejected as exc:
            result = self._rejected(command.id, exc)
        except Exception as exc:  # a bug must cost one command, never the gateway
            log.exception("command %s: internal error", command.id)
            result = self._result(command.id, FAILED, f"internal error: {exc}", reason="internal")
        self._remember(command.id, result)
        return self._publish(result)

    async def _execute(self, command: Command) -> dict[str, Any]:
        nodes = self.resolve(command.target)
        steps = self._plan(command, nodes)
        offline = [n.id for n in nodes if self._online(n.id) is False]
        if len(offline) == len(nodes):
            raise CommandRejected(
                OFFLINE_TARGET, f"offline: {', '.join(offline)}", command_id=command.id
            )
        by_bus: dict[str, list[_Step]] = {}
        for step in steps:
            by_bus.setdefault(step.node.bus, []).append(step)
        outcomes = await asyncio.gather(*(self._run_on_bus(b, s) for b, s in by_bus.items()))
        problems: dict[str, str] = {}
        notes: list[str] = []
        for bus_problems, note in outcomes:
            problems.update(bus_problems)
            if note:
                notes.append(note)
        confirmed = [n.id for n in nodes if n.id not in problems]
        unconfirmed = [n.id for n in nodes if n.id in problems]
        what = _describe(command)
        if not unconfirmed:
            detail = f"{what} confirmed on {len(confirmed)} node(s)"
            if notes:
                detail += f" ({'; '.join(notes)})"
            return self._result(command.id, DONE, detail, confirmed=confirmed)
        detail = f"{what} not confirmed on {len(unconfirmed)} of {len(nodes)} node(s): " + "; ".join(
            f"{node_id}: {problems[node_id]}" for node_id in unconfirmed
        )
        return self._result(
            command.id, FAILED, detail, reason=UNCONFIRMED, confirmed=confirmed, unconfirmed=unconfirmed
        )

    def resolve(self, target: Target) -> list[NodeConfig]:
        """The configured nodes a target names, in configuration order; CommandRejected if none."""
        if target.kind == "node":
            node = self._nodes.get(target.name)
            if node is None:
                raise CommandRejected(
                    UNKNOWN_TARGET, f"no node {target.name!r}{_suggest(target.name, self._nodes)}"
                )
            return [node]
        if target.kind == "group":
            members = self.config.groups.get(target.name)
            if members is None:
                raise CommandRejected(
                    UNKNOWN_TARGET,
                    f"no group {target.name!r}{_suggest(target.name, self.config.groups)}",
                )
            wanted = set(members)
            nodes = [n for n in self.config.node if n.id in wanted]
        elif target.kind == "bus":
            names = [b.name for b in self.config.bus]
            if target.name not in names:
                raise CommandRejected(
                    UNKNOWN_TARGET, f"no bus {target.name!r}{_suggest(target.name, names)}"
                )
            nodes = self.config.nodes_on(target.name)
        else:
            nodes = list(self.config.node)
        if not nodes:
            raise CommandRejected(UNKNOWN_TARGET, f"{target} has no nodes")
        return nodes

    def _plan(self, command: Command, nodes: list[NodeConfig]) -> list[_Step]:
        name = _REGISTER[command.action]
        value: Number = command.level if command.level is not None else bool(command.on)
        steps = []
        for node in nodes:
            regmap = load_role(node.role)
            if name not in regmap:
                raise CommandRejected(
                    BAD_PARAMETERS, f"{node.id} ({node.role}) cannot {command.action}"
                )
            reg = regmap[name]
            try:
                raw = reg.to_raw(value)
            except ValueError as exc:
                raise CommandRejected(BAD_PARAMETERS, f"{node.id}: {exc}") from None
            steps.append(_Step(node, reg, raw))
        return steps

    async def _run_on_bus(self, bus_name: str, steps: list[_Step]) -> tuple[dict[str, str], str]:
        """Write and read back on one bus; returns (problems by node id, a note for the detail)."""
        bus = self.buses[bus_name]
        problems: dict[str, str] = {}
        note = ""
        on_bus = {n.id for n in self.config.nodes_on(bus_name)}
        same = {(s.reg.address, s.reg.words(s.raw)) for s in steps}
        written: list[_Step] = []
        if len(steps) > 1 and {s.node.id for s in steps} == on_bus and len(same) == 1:
            address, words = same.pop()
            try:
                await bus.broadcast(address, words, priority=URGENT)
            except BusError as exc:
                return {s.node.id: f"broadcast failed: {exc}" for s in steps}, ""
            note = f"broadcast on {bus_name}"
            for step in steps:
                if self._online(step.node.id) is False:
                    problems[step.node.id] = "offline"
                else:
                    written.append(step)
        else:
            for step in steps:
                if self._online(step.node.id) is False:
                    problems[step.node.id] = "offline"
                    continue
                try:
                    await bus.write(step.node.unit, step.reg.address, step.reg.words(step.raw))
                except BusError as exc:
                    problems[step.node.id] = f"write failed: {exc}"
                    continue
                written.append(step)
        for step in written:
            problem = await self._confirm(bus, step)
            if problem:
                problems[step.node.id] = problem
        return problems, note

    async def _confirm(self, bus: ModbusBus, step: _Step) -> str | None:
        """Read the node's holding registers back; None when it holds the written value."""
        regmap = load_role(step.node.role)
        try:
            start, words = await bus.read_table(step.node.unit, regmap, HOLDING, priority=URGENT)
        except BusError as exc:
            return f"read-back failed: {exc}"
        found: Number | None = None
        values = {}
        for reg, raw in regmap.decode(HOLDING, start, words):
            values[reg.name] = reg.value(raw)
            if reg.name == step.reg.name:
                found = raw
        state = self.stats.nodes.get(step.node.id)
        if state is not None:
            state.values.update(values)
        if found != step.raw:
            shown = "nothing" if found is None else step.reg.value(found)
            return f"read back {shown}, expected {step.reg.value(step.raw)}"
        return None

    def _online(self, node_id: str) -> bool | None:
        state = self.stats.nodes.get(node_id)
        return None if state is None else state.online

    def _remember(self, command_id: str, result: dict[str, Any] | None) -> None:
        self._results[command_id] = result
        self._results.move_to_end(command_id)
        while len(self._results) > REMEMBER:
            self._results.popitem(last=False)

    def _rejected(self, command_id: str | None, exc: CommandRejected) -> dict[str, Any]:
        return self._result(command_id, REJECTED, exc.detail, reason=exc.reason)

    def _result(
        self,
        command_id: str | None,
        status: str,
        detail: str,
        *,
        reason: str | None = None,
        confirmed: list[str] | None = None,
        unconfirmed: list[str] | None = None,
    ) -> dict[str, Any]:
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


def _describe(command: Command) -> str:
    if command.action == "dim":
        return f"dim {command.level}%"
    return f"switch {'on' if command.on else 'off'}"


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
