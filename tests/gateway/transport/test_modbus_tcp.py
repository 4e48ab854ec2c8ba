"""The Modbus TCP bus against simulated nodes on loopback: reads, pipelining, timeouts, errors, writes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.polling.read_plan import plan_for
from gateway.service.config import BusConfig
from gateway.transport.bus import BusUnavailable, NodeError, NodeTimeout, open_bus
from gateway.transport.modbus_tcp import ModbusTcpBus
from tools.sim.tcp_lamps import SimNode, TcpNodeServer

LAMP = load_role("lamp")


def bus_for(port: int, **kw: Any) -> ModbusTcpBus:
    settings: dict[str, Any] = {"timeout": 2.0, "retries": 0, **kw}
    bus = open_bus(BusConfig(name="tcp0", type="tcp", host="127.0.0.1", port=port, **settings), units=[1, 2])
    assert isinstance(bus, ModbusTcpBus)
    return bus


def run(nodes: list[SimNode], body: Callable[[TcpNodeServer], Awaitable[None]]) -> None:
    async def main() -> None:
        async with TcpNodeServer(nodes) as server:
            await body(server)

    asyncio.run(main())


def test_read_node_decodes_through_the_plan() -> None:
    """Both tables come back in one exchange and decode to the simulated values."""
    async def body(server: TcpNodeServer) -> None:
        bus = bus_for(server.port)
        blocks = await bus.read_node(1, LAMP)
        values = {r.name: r.value(raw) for r, raw in plan_for(LAMP).decode(blocks)}
        assert values["power"] == 12.5
        assert values["dim_level"] == 40
        assert values["role"] == 1
        assert bus.stats.requests == len(plan_for(LAMP).tables)
        assert bus.stats.connected
        bus.close()
        assert not bus.stats.connected

    run([SimNode(1, power=12.5, dim_level=40)], body)


def test_concurrent_polls_share_one_connection() -> None:
    """Fifty reads in flight at once on one connection, each answer matched to its request."""
    async def body(server: TcpNodeServer) -> None:
        bus = bus_for(server.port)
        results = await asyncio.gather(*(bus.read_node(1 + i % 2, LAMP) for i in range(50)))
        powers = [
            {r.name: r.value(raw) for r, raw in plan_for(LAMP).decode(b)}["power"] for b in results
        ]
        assert powers == [10.0 if i % 2 == 0 else 20.0 for i in range(50)]
        assert len(server._sessions) == 1  # the simulator's own bookkeeping
        bus.close()

    run([SimNode(1, power=10.0), SimNode(2, power=20.0)], body)


def test_silent_node_times_out_after_retries() -> None:
    """No answer: NodeTimeout once the retries (with backoff) are used up; a late answer is dropped."""
    async def body(server: TcpNodeServer) -> None:
        node = server.nodes[1]
        node.silent = True
        bus = bus_for(server.port, timeout=0.2, retries=2, backoff=0.01)
        with pytest.raises(NodeTimeout, match=r"no answer within 0\.2 s"):
            await bus.read_node(1, LAMP)
        assert (bus.stats.timeouts, bus.stats.retries) == (3, 2)
        with pytest.raises(NodeTimeout):
            await bus.read_node(1, LAMP, response_timeout=0.05, retries=0)
        assert bus.stats.timeouts == 4
        node.silent = False
        assert INPUT in await bus.read_node(1, LAMP)
        bus.close()

    run([SimNode(1)], body)


def test_exception_answers_are_node_errors() -> None:
    """An unknown unit answers exception 11; a refused write exception 3; both carry the code."""
    async def body(server: TcpNodeServer) -> None:
        bus = bus_for(server.port)
        with pytest.raises(NodeError, match="Modbus exception 11") as info:
            await bus.read_node(9, LAMP)
        assert info.value.code == 11
        dim = LAMP["dim_level"].address
        await bus.write(1, dim, [55])
        assert server.nodes[1].value("dim_level") == 55
        with pytest.raises(NodeError) as refused:
            await bus.write(1, dim, [300])
        assert refused.value.code == 3
        start, words = await bus.read_table(1, LAMP, HOLDING)
        assert words[dim - start] == 55
        bus.close()

    run([SimNode(1)], body)


def test_broadcast_writes_every_configured_unit() -> None:
    """Modbus TCP has no broadcast: every unit the bus knows is written."""
    async def body(server: TcpNodeServer) -> None:
        bus = bus_for(server.port)
        await bus.broadcast(LAMP["dim_level"].address, [7])
        assert [server.nodes[u].value("dim_level") for u in (1, 2)] == [7, 7]
        assert bus.stats.broadcasts == 1
        bus.close()

    run([SimNode(1), SimNode(2)], body)


def test_unreachable_server_and_reconnect() -> None:
    """A closed port is BusUnavailable; a dropped connection fails its requests and is reopened later."""
    async def main() -> None:
        server = TcpNodeServer([SimNode(1)])
        await server.start()
        port = server.port
        bus = bus_for(port)
        await bus.read_node(1, LAMP)
        await server.stop()
        with pytest.raises(BusUnavailable):
            await bus.read_node(1, LAMP)
        with pytest.raises(BusUnavailable):  # within the reconnect backoff: no new attempt yet
            await bus.read_node(1, LAMP)
        server = TcpNodeServer([SimNode(1)], port=port)
        await server.start()
        deadline = asyncio.get_running_loop().time() + 30
        while True:
            try:
                await bus.read_node(1, LAMP)
                break
            except BusUnavailable:
                assert asyncio.get_running_loop().time() < deadline, "never reconnected"
                await asyncio.sleep(0.1)
        bus.close()
        await server.stop()

    asyncio.run(main())
