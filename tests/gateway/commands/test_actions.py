"""Action plans (what is written, what confirms it, what is refused before anything is written) and their
execution on a bus: broadcast or node by node, read-backs tried again while a node settles, reads before the
write, follow-up steps.

The executor runs here against a bus of register words in memory, so that the
edge cases (a node that needs a moment, a node that never answers, a reboot)
are exact; the same code runs against the real firmware in
``hil_tests/test_command_actions.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from gateway.commands.actions import CLOCK_TOLERANCE, Context, plan_node, settings, target_problem
from gateway.commands.executor import BusExecutor
from gateway.commands.node_plan import NodePlan, Readback
from gateway.commands.parse import BAD_PARAMETERS, Command, CommandRejected, Target, check_command
from gateway.contracts import HOLDING, INPUT, RegisterMap, load_role
from gateway.service.config import NodeConfig, parse_config
from gateway.service.stats import GatewayStats, NodeStats
from protocols.roles import common, lamp

NOW = 1_800_000_000.0
LAMP = load_role("lamp")
CONFIG = parse_config(
    'site = "s"\ngateway = "g"\n[[bus]]\nname = "bus0"\ndevice = "/dev/null"\n'
    + "".join(f'[[node]]\nid = "lamp-{u}"\nbus = "bus0"\nunit = {u}\n' for u in (1, 2, 3))
    + '[[node]]\nid = "meter-9"\nbus = "bus0"\nunit = 9\nrole = "meter"\n'
)
NODES = {n.id: n for n in CONFIG.node}


def command(action: str, params: dict[str, Any] | None = None, target: str = "lamp-1") -> Command:
    obj: dict[str, Any] = {"id": "c-1", "iat": NOW, "exp": NOW + 60, "target": target, "action": action}
    if params is not None:
        obj["params"] = params
    return check_command(obj)


def plan(action: str, params: dict[str, Any] | None = None, node: str = "lamp-1",
         known: dict[str, Any] | None = None) -> NodePlan:
    n = NODES[node]
    return plan_node(command(action, params, node), n, load_role(n.role), NOW, Context(known, CONFIG.node))


def refusal(action: str, params: dict[str, Any] | None = None, node: str = "lamp-1",
            known: dict[str, Any] | None = None) -> str:
    with pytest.raises(CommandRejected) as info:
        plan(action, params, node, known)
    assert info.value.reason == BAD_PARAMETERS
    return info.value.detail


def readback(values: dict[str, Any], before: dict[str, Any] | None = None, since: float = 1.0) -> Readback:
    return Readback([values], before or {}, NOW + 1, since)


def test_dim_and_switch_write_one_register_and_read_it_back() -> None:
    p = plan("dim", {"level": 35})
    assert p.writes == [(LAMP["dim_level"].address, (35,))]
    assert [r.regmap.registers[0].name for r in p.reads] == ["dim_level"]
    assert p.check(readback({"dim_level": 35})) is None
    assert p.check(readback({"dim_level": 30})) == "read back dim_level 30, expected 35"
    assert plan("switch", {"on": False}).writes == [(LAMP["relay"].address, (0,))]


def test_override_writes_level_and_minutes_in_one_request_and_wants_the_lamp_to_follow() -> None:
    p = plan("override", {"level": 80, "minutes": 10})
    assert p.writes == [(LAMP["override_level"].address, (80, 10))]
    assert p.settle > 0  # `control` is published once a sample
    ok = {"override_level": 80, "override_minutes": 10, "dim_level": 80, "relay": 1, "control": 1}
    assert p.check(readback(ok)) is None
    assert p.check(readback({**ok, "override_minutes": 9})) is None  # a minute ticked
    assert "override_minutes 8" in str(p.check(readback({**ok, "override_minutes": 8})))
    assert "the gateway drives this lamp" in str(p.check(readback({**ok, "control": 0, "dim_level": 40})))
    assert "lamp is at 40%" in str(p.check(readback({**ok, "dim_level": 40})))
    assert plan("clear_override").writes == [(LAMP["override_minutes"].address, (0,))]
    assert "has no register 'override_level'" in refusal("override", {"level": 1, "minutes": 1}, node="meter-9")


def test_time_sync_writes_the_clock_of_the_moment_it_goes_out() -> None:
    p = plan("time_sync")
    clock = LAMP["clock"]
    assert p.writes_at(NOW + 7) == [(clock.address, clock.words(int(NOW + 7)))]
    assert p.same_writes(plan("time_sync", node="lamp-2"))  # so a whole bus gets one broadcast
    assert p.check(readback({"clock": int(NOW + 1), "node_status": 0})) is None
    assert "+5 s" in str(p.check(readback({"clock": int(NOW + 1 + CLOCK_TOLERANCE + 2), "node_status": 0})))
    assert "unsynced" in str(p.check(readback({"clock": int(NOW + 1), "node_status": common.NODE_CLOCK_UNSYNCED})))


def test_set_config_writes_settings_of_the_role_and_refuses_the_rest() -> None:
    p = plan("set_config", {"latitude": 52.370216, "longitude": 4.895168, "mode": 1})
    assert p.writes == [(LAMP["mode"].address, (1,)),
                        (LAMP["latitude"].address, LAMP["latitude"].words(52370216) + LAMP["longitude"].words(4895168))]
    assert "mode" in settings(LAMP) and "tz_offset" in settings(LAMP) and "dim_level" not in settings(LAMP)
    assert p.check(readback({"mode": 1, "latitude": 52370216, "longitude": 4895168})) is None
    assert "latitude: 95 is outside -90.0..90.0" in refusal("set_config", {"latitude": 95})
    assert "'relay' is not a setting: its action is switch" in refusal("set_config", {"relay": 1})
    assert "has no setting 'latitud'; did you mean 'latitude'?" in refusal("set_config", {"latitud": 1})
    assert "photocell: need 0 <= on < off lux, got on 40 off 30" in refusal(
        "set_config", {"photo_on": 40}, known={"photo_on": 10, "photo_off": 30})
    plan("set_config", {"photo_on": 40}, known={"photo_on": 10, "photo_off": 0})  # no photocell: any photo_on
    with pytest.raises(CommandRejected) as info:
        command("set_config", {"mode": True})
    assert "'mode' must be a number" in info.value.detail


def test_set_unit_is_one_write_read_at_the_new_unit_and_never_collides() -> None:
    p = plan("set_unit", {"unit": 42})
    assert p.writes == [(LAMP["unit"].address, (42, common.CMD_APPLY_UNIT))]
    assert p.reads[0].unit == 42 and not p.broadcast
    assert p.check(readback({"unit": 42})) is None
    assert "unit 2 belongs to lamp-2 on bus bus0" in refusal("set_unit", {"unit": 2})
    assert "unit 1 is its unit already" in refusal("set_unit", {"unit": 1})
    assert target_problem(command("set_unit", {"unit": 42}, "all")) is not None
    assert target_problem(command("set_unit", {"unit": 42})) is None


def test_reboot_reads_the_boot_counter_before_and_wants_it_grown_with_a_young_uptime() -> None:
    p = plan("reboot")
    assert p.writes == [(LAMP["command"].address, (common.CMD_REBOOT,))]
    assert p.before and p.settle == 120 and p.follow is not None
    assert p.check(readback({"boots": 6, "uptime": 2}, {"boots": 5}, since=4.0)) is None
    assert "no reboot seen: boots still 5" in str(p.check(readback({"boots": 5, "uptime": 900}, {"boots": 5})))
    assert "older than the reboot" in str(p.check(readback({"boots": 6, "uptime": 900}, {"boots": 5}, since=3)))
    assert p.follow(NOW).writes_at(NOW) == plan("time_sync").writes_at(NOW)  # the clock is set again
    assert plan("reboot", {"within": 30}).settle == 30


def test_set_schedule_confirms_each_program_through_the_window() -> None:
    params = {"programs": {"2": [[0, 0, 20]], "4": None}, "calendar": {"default": 2}}
    p = plan("set_schedule", params)
    starts = [lamp.PROGRAM_START, lamp.CALENDAR_START, lamp.PROGRAM_START]
    assert [(a, w[:2]) for a, w in p.writes] == list(zip(starts, [(2, 1), (2, 0), (4, 0)], strict=True))
    assert [r.select for r in p.reads] == [((lamp.PROGRAM_START, (2,)),), ((lamp.PROGRAM_START, (4,)),), ()]
    start = lamp.PROGRAM_START
    good: list[dict[str, Any]] = [{f"w{start + k}": w for k, w in enumerate((2, 1, 0, 0, 20))},
            {f"w{start}": 4, f"w{start + 1}": 0},
            {f"w{lamp.CALENDAR_START + k}": (2 if k == 0 else 0) for k in range(lamp.CALENDAR_WORDS)}]
    assert p.check(Readback(good, {}, NOW, 1)) is None
    still: list[dict[str, Any]] = [good[0], {f"w{start}": 4, f"w{start + 1}": 3}, good[2]]
    assert p.check(Readback(still, {}, NOW, 1)) == "program 4 is still stored (3 points)"
    assert "the node does not store (programs register 0x0001)" in refusal(
        "set_schedule", {"calendar": {"default": 3}}, known={"programs": 1})
    assert "has not yet read which programs" in refusal("set_schedule", {"calendar": {"default": 3}})
    plan("set_schedule", {"calendar": {"default": 0}}, known={"programs": 1})
    assert "keeps no programs" in refusal("set_schedule", {"calendar": {"default": 0}}, node="meter-9")


# --- execution -------------------------------------------------------------------------------------------


class MemoryBus:
    """Register words per unit; ``on_write(unit, address, words)`` may change them or raise."""

    def __init__(self, units: Sequence[int]) -> None:
        self.holding = {u: [0] * 400 for u in units}
        self.input = {u: [0] * 200 for u in units}
        self.log: list[tuple[str, int, int]] = []
        self.on_write: Callable[[int, int, Sequence[int]], None] | None = None
        self.silent: set[int] = set()
        self.full_polls: list[int] = []

    def request_full_poll(self, unit: int) -> None:
        self.full_polls.append(unit)

    async def write(self, unit: int, address: int, values: Sequence[int], *, priority: int = 0) -> None:
        self.log.append(("write", unit, address))
        if unit in self.silent or unit not in self.holding:
            raise TimeoutError(f"unit {unit}: no answer")
        self._store(unit, address, values)

    async def broadcast(self, address: int, values: Sequence[int], *, priority: int = 0) -> None:
        self.log.append(("broadcast", 0, address))
        for unit in self.holding:
            if unit not in self.silent:
                self._store(unit, address, values)

    async def read_table(self, unit: int, regmap: RegisterMap, table: int, *, priority: int = 0
                         ) -> tuple[int, Sequence[int]]:
        self.log.append(("read", unit, table))
        if unit in self.silent or unit not in self.holding:
            raise TimeoutError(f"unit {unit}: no answer")
        (start, count), = regmap.blocks(table)
        words = self.holding[unit] if table == HOLDING else self.input[unit]
        return start, words[start:start + count]

    async def write_read(self, unit: int, address: int, values: Sequence[int], regmap: RegisterMap, *,
                         priority: int = 0) -> tuple[int, Sequence[int]]:
        """One transaction, as function 23 on a line: the write, then the holding block read after it."""
        self.log.append(("write_read", unit, address))
        if unit in self.silent or unit not in self.holding:
            raise TimeoutError(f"unit {unit}: no answer")
        self._store(unit, address, values)
        (start, count), = regmap.blocks(HOLDING)
        return start, self.holding[unit][start:start + count]

    def _store(self, unit: int, address: int, values: Sequence[int]) -> None:
        self.holding[unit][address:address + len(values)] = list(values)
        if self.on_write is not None:
            self.on_write(unit, address, values)


def execute(bus: MemoryBus, plans: list[NodePlan], on_bus: set[str] | None = None) -> tuple[dict[str, str], str]:
    stats = GatewayStats()
    for n in CONFIG.node:
        stats.nodes[n.id] = NodeStats(n.id, n.bus, n.unit, n.role)
    ids = on_bus if on_bus is not None else {p.node.id for p in plans}
    return asyncio.run(BusExecutor(bus, "bus0", ids, stats, lambda: NOW).run(plans))


def lamps(*ids: str) -> list[NodeConfig]:
    return [NODES[i] for i in ids]


def test_a_whole_bus_gets_one_broadcast_then_each_node_is_read() -> None:
    bus = MemoryBus([1, 2, 3])
    plans = [plan("dim", {"level": 30}, n.id) for n in lamps("lamp-1", "lamp-2", "lamp-3")]
    problems, note = execute(bus, plans)
    assert (problems, note) == ({}, "broadcast on bus0")
    assert [e[0] for e in bus.log] == ["broadcast", "read", "read", "read"]
    bus = MemoryBus([1, 2, 3])
    problems, note = execute(bus, plans[:2], on_bus={"lamp-1", "lamp-2", "lamp-3"})  # not the whole bus
    # Node by node, each write carries its read-back (one transaction each).
    assert note == "" and [e[0] for e in bus.log] == ["write_read", "write_read"]
    untouched = bus.holding[3][LAMP["dim_level"].address]
    assert [bus.holding[u][LAMP["dim_level"].address] for u in (1, 2, 3)] == [30, 30, untouched] and untouched != 30


def test_a_settling_node_is_read_again_until_it_confirms() -> None:
    bus = MemoryBus([1])
    control = LAMP["control"].address
    p = plan("override", {"level": 70, "minutes": 5})
    p.settle, p.every = 2.0, 0.01
    reads = 0

    def on_write(unit: int, address: int, values: Sequence[int]) -> None:
        bus.holding[unit][LAMP["dim_level"].address:LAMP["dim_level"].address + 2] = [70, 1]

    bus.on_write = on_write
    original = bus.read_table

    async def read_table(unit: int, regmap: RegisterMap, table: int, *, priority: int = 0) -> Any:
        nonlocal reads
        reads += 1
        if reads == 4:  # the node's next sample: the program drives the lamp
            bus.input[unit][control] = 1
        return await original(unit, regmap, table)

    bus.read_table = read_table  # type: ignore[method-assign]
    problems, _ = execute(bus, [p])
    assert problems == {} and reads >= 4


def test_a_node_that_does_not_answer_the_read_before_is_not_written() -> None:
    bus = MemoryBus([1, 2])
    bus.silent.add(2)
    plans = [plan("reboot", {"within": 10}, node="lamp-1"), plan("reboot", {"within": 10}, node="lamp-2")]
    plans[0].settle = 0.0  # lamp-1 is written, does not reboot here, and fails at once
    problems, _ = execute(bus, plans, on_bus={"lamp-1", "lamp-2", "lamp-3"})
    assert problems["lamp-1"].startswith("no reboot seen")
    assert problems["lamp-2"].startswith("read before the command failed")
    assert ("write", 2, LAMP["command"].address) not in bus.log


def test_reboot_waits_for_the_node_and_then_sets_its_clock() -> None:
    bus = MemoryBus([1])
    boots = LAMP["boots"].address
    bus.input[1][boots:boots + 2] = [0, 5]
    bus.input[1][LAMP["uptime"].address:LAMP["uptime"].address + 2] = [0, 4000]
    p = plan("reboot", {"within": 10})
    p.every = 0.01

    def on_write(unit: int, address: int, values: Sequence[int]) -> None:
        if address == LAMP["command"].address and values[0] == common.CMD_REBOOT:
            bus.silent.add(unit)  # gone while it boots ...
            asyncio.get_running_loop().call_later(0.05, back, unit)

    def back(unit: int) -> None:  # ... and back with a grown counter and a fresh uptime
        bus.silent.discard(unit)
        bus.input[unit][boots:boots + 2] = [0, 6]
        bus.input[unit][LAMP["uptime"].address:LAMP["uptime"].address + 2] = [0, 0]

    bus.on_write = on_write
    problems, _ = execute(bus, [p])
    assert problems == {}
    clock = LAMP["clock"]
    assert ("write", 1, clock.address) in bus.log
    assert clock.from_words(bus.holding[1], clock.address) == int(NOW)


def test_a_reboot_that_never_comes_back_fails_with_the_reason() -> None:
    bus = MemoryBus([1])
    bus.input[1][LAMP["boots"].address + 1] = 5
    p = plan("reboot", {"within": 10})
    p.settle, p.every = 0.05, 0.01
    problems, _ = execute(bus, [p])
    assert problems == {"lamp-1": "no reboot seen: boots still 5, uptime 0 s"}


def test_commands_of_every_new_action_parse() -> None:
    for action, params in (("override", {"level": 5, "minutes": 1}), ("clear_override", None),
                           ("set_unit", {"unit": 7}), ("reboot", None), ("set_config", {"mode": 1}),
                           ("set_schedule", {"calendar": {"default": 0}})):
        cmd = command(action, params)
        assert cmd.target == Target("node", "lamp-1") and cmd.describe()
    assert command("reboot").params == {"within": 120}
    assert INPUT != HOLDING


def test_a_reboot_is_not_broadcast_while_a_node_could_not_be_read_first() -> None:
    """A broadcast would reboot the node whose boot counter is unknown too: then it goes node by node."""
    bus = MemoryBus([1, 2])
    bus.silent.add(2)
    plans = [plan("reboot", {"within": 10}, node=n) for n in ("lamp-1", "lamp-2")]
    for p in plans:
        p.settle = 0.0
    problems, note = execute(bus, plans, on_bus={"lamp-1", "lamp-2"})
    assert note == "" and ("broadcast", 0, LAMP["command"].address) not in bus.log
    assert ("write", 1, LAMP["command"].address) in bus.log and "lamp-2" in problems


def test_refresh_reads_every_table_writes_nothing_and_asks_the_poller_for_everything() -> None:
    bus = MemoryBus([1, 2])
    bus.holding[1][LAMP["latitude"].address] = 4321
    p = plan("refresh", {})
    assert p.writes_at(NOW) == [] and p.repoll
    problems, _ = execute(bus, [p])
    assert problems == {}
    assert [e for e in bus.log if e[0] != "read"] == []
    assert sorted(t for _, _, t in bus.log) == [HOLDING, INPUT]
    assert bus.full_polls == [1]
    bus.silent.add(1)
    problems, _ = execute(bus, [plan("refresh", {})])
    assert "read-back failed" in problems["lamp-1"] and bus.full_polls == [1, 1]
