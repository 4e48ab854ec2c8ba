"""The command router against simulated lamps, without a broker: execution, confirmation, results."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2

from gateway.modbus_bus import ModbusBus
from gateway.router import CommandRouter
from gateway.stats import GatewayStats, NodeStats

UNITS = {"lamp-1": 1, "lamp-2": 2, "lamp-3": 3}
GROUPS = {"all-three": ["lamp-1", "lamp-2", "lamp-3"], "pair": ["lamp-1", "lamp-2"], "ghost": ["lamp-4"]}


def cmd(cid: str, target: str, action: str = "dim", **params: Any) -> bytes:
    if action == "dim" and not params:
        params = {"level": 40}
    return cbor2.dumps({"id": cid, "target": target, "action": action, **params})


def run_router(
    pty_pair: tuple[str, str], sim: Any, lamps: list[Any],
    body: Callable[[CommandRouter, list[bytes], GatewayStats], Awaitable[None]],
    units: dict[str, int] | None = None,
) -> None:
    gw_end, node_end = pty_pair
    units = units or UNITS
    groups = {k: v for k, v in GROUPS.items() if all(m in units for m in v)}
    config = sim.config(gw_end, units=units, groups=groups)
    stats = GatewayStats()
    for node in config.node:
        stats.nodes[node.id] = NodeStats(node.id, node.bus, node.unit, node.role)
    published: list[bytes] = []

    async def main() -> None:
        async with sim.serve(node_end, lamps):
            bus = ModbusBus(config.bus[0])
            router = CommandRouter(config, {"bus0": bus}, stats, published.append, clock=lambda: 1234.5)
            try:
                await body(router, published, stats)
            finally:
                bus.close()

    asyncio.run(main())


def test_single_node_dim_is_written_and_confirmed(pty_pair, sim) -> None:
    """One node: direct write, read back, result 'done' naming the node."""
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("c-1", "lamp-2", level=35))
        assert result == {
            "id": "c-1", "status": "done", "detail": "dim 35% confirmed on 1 node(s)",
            "confirmed": ["lamp-2"], "unconfirmed": [], "ts": 1234.5,
        }
        assert cbor2.loads(published[-1]) == result
        assert stats.nodes["lamp-2"].values["dim_level"] == 35
        assert stats.commands["done"] == 1

    run_router(pty_pair, sim, lamps, body)
    assert [lamp.holding[0] for lamp in lamps] == [100, 35, 100]
    assert lamps[1].writes == [(0, [35])]


def test_group_covering_the_bus_is_broadcast(pty_pair, sim) -> None:
    """A group that is every node of the bus goes out as one broadcast, then each is read back."""
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("c-2", "group:all-three", "switch", on=False))
        assert result is not None
        assert result["status"] == "done"
        assert "broadcast on bus0" in result["detail"]
        assert result["confirmed"] == ["lamp-1", "lamp-2", "lamp-3"]
        assert router.buses["bus0"].stats.broadcasts == 1

    run_router(pty_pair, sim, lamps, body)
    assert [lamp.holding[1] for lamp in lamps] == [0, 0, 0]


def test_partial_group_is_written_node_by_node(pty_pair, sim) -> None:
    """A group that leaves a node of the bus out is not broadcast."""
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("c-3", "group:pair", level=10))
        assert result is not None
        assert result["status"] == "done"
        assert router.buses["bus0"].stats.broadcasts == 0

    run_router(pty_pair, sim, lamps, body)
    assert [lamp.holding[0] for lamp in lamps] == [10, 10, 100]


def test_unconfirmed_nodes_make_the_command_fail(pty_pair, sim) -> None:
    """A node that does not answer is listed as unconfirmed; status 'failed'."""
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]
    lamps[2].silent = True

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        result = await router.handle(cmd("c-4", "all", level=60))
        assert result is not None
        assert result["status"] == "failed"
        assert result["reason"] == "unconfirmed"
        assert result["confirmed"] == ["lamp-1", "lamp-2"]
        assert result["unconfirmed"] == ["lamp-3"]
        assert "lamp-3: read-back failed" in result["detail"]

    run_router(pty_pair, sim, lamps, body)
    assert [lamp.holding[0] for lamp in lamps[:2]] == [60, 60]


def test_rejections_name_their_reason(pty_pair, sim) -> None:
    """Unknown node/group/bus, offline node, garbage: rejected with the right code, nothing written."""
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        async def reason(payload: bytes) -> tuple[Any, Any, Any]:
            result = await router.handle(payload)
            assert result is not None
            assert result["status"] == "rejected"
            assert result["confirmed"] == result["unconfirmed"] == []
            return result["id"], result["reason"], result["detail"]

        assert (await reason(cmd("r-1", "lamp-9")))[:2] == ("r-1", "unknown_target")
        assert "did you mean 'lamp-1'" in (await reason(cmd("r-2", "lamp-11")))[2]
        assert (await reason(cmd("r-3", "group:nope")))[1] == "unknown_target"
        assert (await reason(cmd("r-4", "bus:bus9")))[1] == "unknown_target"
        stats.nodes["lamp-3"].online = False
        assert (await reason(cmd("r-5", "lamp-3")))[:2] == ("r-5", "offline_target")
        assert (await reason(b"\xff\xfe"))[:2] == (None, "malformed")
        assert (await reason(cmd("r-6", "lamp-1", level=101)))[:2] == ("r-6", "bad_parameters")
        assert stats.commands["rejected"] == 7

    run_router(pty_pair, sim, lamps, body)
    assert all(lamp.writes == [] for lamp in lamps)


def test_offline_member_of_a_group_is_skipped_and_reported(pty_pair, sim) -> None:
    """An offline node in a group is not written; the others are, and the result says who."""
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        stats.nodes["lamp-2"].online = False
        result = await router.handle(cmd("o-1", "group:pair", level=5))
        assert result is not None
        assert (result["status"], result["unconfirmed"]) == ("failed", ["lamp-2"])
        assert "lamp-2: offline" in result["detail"]

    run_router(pty_pair, sim, lamps, body)
    assert [lamp.holding[0] for lamp in lamps] == [5, 100, 100]


def test_duplicate_id_republishes_without_executing(pty_pair, sim) -> None:
    """The same id twice: executed once, the first result published again."""
    lamps = [sim.lamp(1)]

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        first = await router.handle(cmd("d-1", "lamp-1", level=30))
        lamps[0].holding[0] = 77  # someone else changed it since
        again = await router.handle(cmd("d-1", "lamp-1", level=30))
        assert again == first
        assert len(published) == 2
        assert published[0] == published[1]

    run_router(pty_pair, sim, lamps, body, units={"lamp-1": 1})
    assert lamps[0].holding[0] == 77
    assert lamps[0].writes == [(0, [30])]


def test_submitted_commands_run_concurrently_and_all_answer(pty_pair, sim) -> None:
    """Commands submitted together through run() each get exactly one result."""
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]

    async def body(router: CommandRouter, published: list[bytes], stats: GatewayStats) -> None:
        task = asyncio.create_task(router.run())
        for i, node in enumerate(UNITS):
            router.submit(cmd(f"s-{i}", node, level=20 + i))
        router.submit(b"garbage")
        deadline = asyncio.get_running_loop().time() + 20
        while len(published) < 4:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        results = sorted((cbor2.loads(p) for p in published), key=lambda r: str(r["id"]))
        assert [(r["id"], r["status"]) for r in results] == [
            (None, "rejected"), ("s-0", "done"), ("s-1", "done"), ("s-2", "done")
        ]

    run_router(pty_pair, sim, lamps, body)
    assert [lamp.holding[0] for lamp in lamps] == [20, 21, 22]
