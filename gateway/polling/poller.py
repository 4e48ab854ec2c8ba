"""Polling: workers per bus take the most overdue node, poll it, report its readings and state.

A serial line carries one transaction at a time, so an rtu bus has one worker; a
tcp bus has ``concurrency`` workers whose requests share one connection. Buses
run in parallel. :mod:`gateway.polling.scheduler` decides which node is next and counts
the poll slots that an overloaded bus had to skip; a :class:`~gateway.polling.scheduler.Gate`
lets the uplink hold the workers back when it cannot take more (back-pressure:
polls are skipped and counted, never queued without limit).

Each poll reads the registers that are due (:mod:`gateway.polling.poll_plan`:
measurements every time, counters every few polls, settings and identity at
start, when the node says its settings changed, after a reboot, or on
an operator's ``refresh`` command), merged into the fewest requests the line carries
cheapest (pipelined on TCP; on a serial line each request holds the line for
its own transaction, so a command waits one transaction at most), and hands
``(node, time, readings)`` to a callback, which turns them into SenML (on a
serial line once the next request is on the wire, see ``ModbusBus.after_send``:
the node's answer then takes a frame's time, while the line's silences do not
wait for it). The
readings hold every register of the map: those not read this time carry the
value last read.

A node goes offline after :data:`~gateway.service.stats.OFFLINE_AFTER` failed polls in
a row and comes back online with its next good poll; each change is reported
to ``on_state`` (the daemon publishes it as the node's retained state). While
offline it is polled at most every :data:`OFFLINE_INTERVAL` seconds, so that a
dead node does not eat the line with timeouts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from gateway.contracts import RegisterMap, load_role
from gateway.polling.poll_plan import EVERYTHING, LineCost, NodePolls, PollPlanError
from gateway.polling.poll_plan import plan_for as poll_plan_for
from gateway.polling.read_plan import Readings, plan_for
from gateway.polling.scheduler import BACKPRESSURE, OVERRUN, Gate, Schedule
from gateway.service.config import NodeConfig
from gateway.service.stats import OFFLINE_AFTER, GatewayStats, NodeStats
from gateway.transport.bus import Bus, BusError, NodeError
from gateway.transport.priority_lock import ROUTINE

log = logging.getLogger(__name__)

OFFLINE_INTERVAL = 5.0
"""Seconds between polls of an offline node (or its own interval, if longer)."""
RELOOK = 3
"""Polls of a node in a row when commands keep landing between a poll's requests (the last one reports)."""
NODE_TURNAROUND = 0.0005
"""Seconds a node takes to start answering once its t3.5 has passed (for the break-even of bridged gaps)."""
VALUES_EVERY = 1.0
"""Seconds between refreshes of a node's engineering values in its state (a dashboard's view;
the readings themselves go upstream on every poll)."""

__all__ = ["OFFLINE_INTERVAL", "BusPoller", "OnReadings", "OnState", "Readings", "decode"]

OnReadings = Callable[[NodeConfig, float, Readings], None]
"""Called after each good poll with the node, the poll time (epoch seconds) and the readings."""
OnState = Callable[[NodeConfig, NodeStats], None]
"""Called when a node goes online (first good poll, or back) or offline; ``state.online`` says which."""


def decode(regmap: RegisterMap, blocks: dict[int, tuple[int, list[int]]]) -> Readings:
    """Words read from a node -> ``(register, raw)`` for every register, in register-map order."""
    return plan_for(regmap).decode(blocks)


class BusPoller:
    """Polls the nodes of one bus until cancelled.

    Args:
        bus: the bus the nodes hang on.
        nodes: the nodes to poll.
        stats: live state per node id; entries are created for missing nodes.
        on_readings: receives every good poll.
        offline_interval: see :data:`OFFLINE_INTERVAL`.
        clock: wall clock for poll times (epoch seconds).
        on_state: receives online/offline changes.
        gate: back-pressure from the uplink; always open when omitted.
        totals: gateway-wide counters (readings polled, polls skipped by reason).
    """

    def __init__(
        self,
        bus: Bus,
        nodes: list[NodeConfig],
        stats: dict[str, NodeStats],
        on_readings: OnReadings,
        *,
        offline_interval: float = OFFLINE_INTERVAL,
        clock: Callable[[], float] = time.time,
        on_state: OnState | None = None,
        gate: Gate | None = None,
        totals: GatewayStats | None = None,
    ) -> None:
        self.bus = bus
        self.nodes = list(nodes)
        self.stats = stats
        self.on_readings = on_readings
        self.offline_interval = offline_interval
        self.clock = clock
        self.on_state = on_state
        self.gate = gate or Gate()
        self.totals = totals or GatewayStats()
        self._by_id = {n.id: n for n in self.nodes}
        self._values_at: dict[str, float] = {}
        self.memory: dict[str, NodePolls] = {}
        """Per node id: what its polls read and the last value of every register."""
        config = getattr(bus, "config", None)
        if config is not None and getattr(config, "type", "rtu") == "rtu":
            bits = 1 + 8 + (0 if config.parity == "N" else 1) + config.stopbits
            self.cost = LineCost(config.baud, bits=bits, turnaround=NODE_TURNAROUND)
        else:
            self.cost = LineCost(None)
        for node in self.nodes:
            stats.setdefault(node.id, NodeStats(node.id, node.bus, node.unit, node.role))

    async def run(self) -> None:
        """Poll until cancelled: ``bus.concurrency`` workers share one earliest-due-first schedule."""
        if not self.nodes:
            return
        loop = asyncio.get_running_loop()
        schedule = Schedule(((n.id, n.interval) for n in self.nodes), loop.time())
        wakeup = asyncio.Event()
        workers = min(max(1, self.bus.concurrency), len(self.nodes))
        async with asyncio.TaskGroup() as group:
            for i in range(workers):
                group.create_task(self._worker(schedule, wakeup), name=f"poll-{self.bus.name}-{i}")

    async def _worker(self, schedule: Schedule, wakeup: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        gate = self.gate
        me = asyncio.current_task()
        while True:
            if me is not None and me.cancelling():
                # Python 3.11's wait_for (pymodbus uses it) swallows a cancellation that arrives
                # in the loop turn its answer came in: end here, or stopping the gateway hangs.
                raise asyncio.CancelledError
            due = schedule.next_due()
            now = loop.time()
            if due is None or due > now:
                # Sleep until the earliest due time, or until another worker puts a node back.
                wakeup.clear()
                timer = None if due is None else loop.call_at(due, wakeup.set)
                try:
                    await wakeup.wait()
                finally:
                    if timer is not None:
                        timer.cancel()
                continue
            held = False
            if not gate.open():
                held = True
                await gate.wait()
                now = loop.time()
            taken = schedule.take(now)
            if taken is None:
                continue
            key, missed = taken
            node = self._by_id[key]
            if missed:
                self._skipped(node, missed, BACKPRESSURE if held else OVERRUN)
            try:
                await self.poll(node, hand_on_later=True)  # the next poll follows at once
            finally:
                schedule.done(key, self._interval(node))
                wakeup.set()

    def _interval(self, node: NodeConfig) -> float:
        if self.stats[node.id].online is False:
            return max(node.interval, self.offline_interval)
        return node.interval

    def _skipped(self, node: NodeConfig, missed: int, reason: str) -> None:
        self.stats[node.id].skipped += missed
        self.totals.polls_skipped[reason] += missed

    async def poll(self, node: NodeConfig, *, priority: int = ROUTINE, hand_on_later: bool = False) -> bool:
        """Poll one node once (the registers due), update its state, report readings; True on success.

        ``hand_on_later`` (the poller's own workers, which poll again at once):
        on a serial line the readings are reported once the next request is on
        the wire, or soon after if none follows (``ModbusBus.after_send``); else
        before this returns.
        """
        state = self.stats[node.id]
        regmap = load_role(node.role)
        memory = self.memory.get(node.id)
        if memory is None or memory.regmap is not regmap:
            memory = self.memory[node.id] = NodePolls(regmap)
        try:
            for _ in range(RELOOK):
                commands = self.bus.commands_to(node.unit)
                if commands != memory.commands:  # a command went to the node: settings, clock, counters may move
                    memory.commands = commands
                    memory.request(EVERYTHING)
                plan = poll_plan_for(regmap, memory.due(), self.cost, use_mirrors=memory.mirrors)
                answers = await self.bus.read_requests(
                    node.unit, plan.requests, priority=priority, response_timeout=node.timeout, retries=node.retries
                )
                try:
                    read = plan.decode(answers)
                except PollPlanError as exc:
                    raise NodeError(f"unit {node.unit} on {node.bus}: {exc}") from exc
                if "role" in regmap and any(reg.name == "role" for reg in plan.registers):
                    _check_role(regmap, [(regmap.registers[i], raw) for i, raw in read], node)
                readings = memory.absorb(plan, read)
                if self.bus.commands_to(node.unit) == commands:
                    break
                # A command slipped in between this poll's requests: what came from memory may predate it.
        except BusError as exc:
            self._failed(node, state, exc)
            return False
        now = self.clock()
        if now - self._values_at.get(node.id, -VALUES_EVERY) >= VALUES_EVERY:
            # Converting every register costs about as much as the poll itself: do it for people, not per poll.
            self._values_at[node.id] = now
            self._hand_on(lambda: state.values.update({reg.name: reg.value(raw) for reg, raw in readings}),
                          later=hand_on_later)
        state.last_poll = now
        state.polls += 1
        state.readings += len(read)  # values read from the node; those repeated from memory are not counted
        self.totals.readings_polled += len(read)
        state.consecutive_failures = 0
        state.last_error = None
        if state.online is not True:
            log.info(
                "node %s %s (unit %d on %s)",
                node.id, "back online" if state.online is False else "online", node.unit, node.bus,
                extra={"node": node.id, "bus": node.bus, "unit": node.unit, "online": True},
            )
            state.online = True
            if self.on_state is not None:
                self.on_state(node, state)
        self._hand_on(lambda: self.on_readings(node, now, readings), later=hand_on_later)
        return True

    def _hand_on(self, work: Callable[[], None], *, later: bool) -> None:
        """Run a poll's follow-up work; ``later``, on a serial line, once the next request is on the wire (the
        node then takes a frame's time to answer), so that it does not lengthen the silence between two
        transactions."""
        after_send = getattr(self.bus, "after_send", None) if later else None
        if after_send is None:
            work()
        else:
            after_send(work)

    def _failed(self, node: NodeConfig, state: NodeStats, exc: BusError) -> None:
        state.failures += 1
        state.consecutive_failures += 1
        state.last_error = str(exc)
        log.debug("node %s: poll failed: %s", node.id, exc)
        if state.online is not False and state.consecutive_failures >= OFFLINE_AFTER:
            log.warning(
                "node %s offline after %d failed polls: %s", node.id, state.consecutive_failures, exc,
                extra={"node": node.id, "bus": node.bus, "unit": node.unit, "online": False},
            )
            state.online = False
            if self.on_state is not None:
                self.on_state(node, state)


def _check_role(regmap: RegisterMap, readings: Readings, node: NodeConfig) -> None:
    """A node that reports another role than configured would be decoded as nonsense: refuse it."""
    index = _role_index.get(regmap.role, -2)
    if index == -2:
        names = [reg.name for reg in regmap.registers]
        index = _role_index[regmap.role] = names.index("role") if "role" in names else -1
    if index < 0:
        return
    if index < len(readings) and readings[index][0].name == "role":
        raw = readings[index][1]
    else:  # readings not in map order: look it up
        raw = next((r for reg, r in readings if reg.name == "role"), regmap.role_id)
    if raw != regmap.role_id:
        raise NodeError(
            f"unit {node.unit} on {node.bus} reports role {raw}, "
            f"configured as {regmap.role} ({regmap.role_id})"
        )


_role_index: dict[str, int] = {}
