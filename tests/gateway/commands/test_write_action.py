"""The ``write`` action: a device profile's writable registers and coils, within range, confirmed by reading back."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from gateway.commands.actions import Context, plan_node
from gateway.commands.executor import BusExecutor
from gateway.commands.node_plan import NodePlan, Readback
from gateway.commands.parse import BAD_PARAMETERS, CommandRejected, check_command
from gateway.contracts import COIL, HOLDING, RegisterMap, load_role
from gateway.service.config import parse_config
from gateway.service.stats import GatewayStats, NodeStats

NOW = 1_800_000_000.0
CONFIG = parse_config(
    'site = "s"\ngateway = "g"\n[[bus]]\nname = "bus0"\ndevice = "/dev/null"\n'
    '[[node]]\nid = "relays"\nbus = "bus0"\nunit = 1\nrole = "relay8"\n'
    '[[node]]\nid = "meter"\nbus = "bus0"\nunit = 2\nrole = "sdm120"\n'
    '[[node]]\nid = "lamp"\nbus = "bus0"\nunit = 3\n'
)
NODES = {n.id: n for n in CONFIG.node}


def plan(params: dict[str, Any], node: str = "relays") -> NodePlan:
    cmd = check_command({"id": "w-1", "iat": NOW, "exp": NOW + 60, "target": node, "action": "write",
                         "params": params})
    n = NODES[node]
    return plan_node(cmd, n, load_role(n.role), NOW, Context({}, CONFIG.node))


def refusal(params: dict[str, Any], node: str = "relays") -> str:
    with pytest.raises(CommandRejected) as info:
        plan(params, node)
    assert info.value.reason == BAD_PARAMETERS
    return info.value.detail


def test_relays_become_coil_writes_read_back_from_the_coils() -> None:
    """Neighbouring coils share one write (function 15); the read-back reads the coils."""
    p = plan({"relay_3": True, "relay_2": False, "relay_7": True})
    assert p.writes == []
    assert p.coils == [(1, (0, 1)), (6, (1,))]
    assert not p.broadcast
    assert [(r.table, [reg.name for reg in r.regmap.registers]) for r in p.reads] == [
        (COIL, ["relay_2", "relay_3", "relay_7"])]
    assert p.check(Readback([{"relay_2": 0, "relay_3": 1, "relay_7": 1}], {}, NOW, 0.1)) is None
    assert p.check(Readback([{"relay_2": 0, "relay_3": 0, "relay_7": 1}], {}, NOW, 0.1)) == (
        "read back relay_3 False, expected True")


def test_a_holding_value_is_written_in_engineering_units() -> None:
    p = plan({"pulse_width": 100.0}, node="meter")
    reg = load_role("sdm120")["pulse_width"]
    assert p.writes == [(reg.address, reg.words(100.0))]
    assert p.coils == []


@pytest.mark.parametrize(("params", "node", "detail"), [
    ({"relay_9": True}, "relays", "(relay8) has no writable register 'relay_9'; did you mean 'relay_8'?"),
    ({"input_1": True}, "relays", "has no writable register 'input_1'"),
    ({"relay_1": 1}, "relays", "relay_1 takes true or false, got 1"),
    ({"pulse_width": True}, "meter", "pulse_width takes a number, got True"),
    ({"pulse_width": 500.0}, "meter", "pulse_width: 500.0 is outside 60.0..200.0"),
    ({"voltage": 230.0}, "meter", "(writable: pulse_width)"),
    ({"dim_level": 40}, "lamp", "(lamp) is a streetedge node: write is for device profiles"),
])
def test_what_the_profile_does_not_allow_is_refused_before_writing(
    params: dict[str, Any], node: str, detail: str
) -> None:
    assert detail in refusal(params, node)


def test_write_needs_registers_with_numbers_or_booleans() -> None:
    for params in ({}, {"relay_1": "on"}, {"relay_1": [1]}, {"pulse_width": float("nan")}):
        with pytest.raises(CommandRejected) as info:
            check_command({"id": "w", "iat": NOW, "exp": NOW + 60, "target": "relays", "action": "write",
                           "params": params})
        assert info.value.reason == BAD_PARAMETERS


class CoilBus:
    """Coils and holding words of one unit in memory, with a log of the functions used."""

    def __init__(self) -> None:
        self.coils = [0] * 8
        self.log: list[tuple[str, int, tuple[int, ...]]] = []

    async def write(self, unit: int, address: int, values: Sequence[int], *, priority: int = 0) -> None:
        self.log.append(("write", address, tuple(values)))

    async def write_coils(self, unit: int, address: int, bits: Sequence[int], *, priority: int = 0) -> None:
        self.log.append(("coils", address, tuple(bits)))
        self.coils[address:address + len(bits)] = bits

    async def broadcast(self, address: int, values: Sequence[int], *, priority: int = 0) -> None:
        raise AssertionError("a coil write is never broadcast")

    async def read_table(self, unit: int, regmap: RegisterMap, table: int, *, priority: int = 0
                         ) -> tuple[int, Sequence[int]]:
        assert table == COIL
        (start, count), = regmap.blocks(table)
        self.log.append(("read", start, tuple(self.coils[start:start + count])))
        return start, self.coils[start:start + count]


def test_the_executor_sends_coil_runs_and_confirms_them() -> None:
    bus = CoilBus()
    stats = GatewayStats()
    node = NODES["relays"]
    stats.nodes[node.id] = NodeStats(node.id, node.bus, node.unit, node.role)
    p = plan({"relay_1": True, "relay_2": True, "relay_5": True})
    problems, note = asyncio.run(BusExecutor(bus, "bus0", {node.id}, stats, lambda: NOW).run([p]))
    assert (problems, note) == ({}, "")
    assert bus.log == [("coils", 0, (1, 1)), ("coils", 4, (1,)), ("read", 0, (1, 1, 0, 0, 1))]
    assert stats.nodes[node.id].values["relay_5"] is True
    assert HOLDING not in {e[1] for e in bus.log if e[0] == "write"}
