"""Pollers under overload and back-pressure, on simulated Modbus TCP nodes; the RTU retry path."""

from __future__ import annotations

import asyncio

from gateway.polling.poller import BusPoller
from gateway.polling.read_plan import Readings
from gateway.polling.scheduler import Gate
from gateway.service.config import NodeConfig, parse_config
from gateway.service.stats import GatewayStats, NodeStats
from gateway.transport.bus import open_bus
from gateway.transport.modbus_rtu import ModbusBus
from tools.sim.tcp_lamps import SimNode, TcpNodeServer


def tcp_config(port: int, nodes: int, interval: float, concurrency: int) -> str:
    lines = ['site = "s"', 'gateway = "g"', "[[bus]]", 'name = "b"', 'type = "tcp"', 'host = "127.0.0.1"',
             f"port = {port}", f"concurrency = {concurrency}"]
    for u in range(1, nodes + 1):
        lines += ["[[node]]", f'id = "n{u}"', 'bus = "b"', f"unit = {u}", f"interval = {interval}"]
    return "\n".join(lines)


async def poll_for(seconds: float, poller: BusPoller) -> None:
    task = asyncio.create_task(poller.run())
    await asyncio.sleep(seconds)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    poller.bus.close()


def test_overloaded_bus_polls_every_node_in_turn_and_counts_the_rest() -> None:
    """200 nodes due every 10 ms (20,000 polls/s asked) on one connection: fair shares, overruns counted."""
    async def main() -> None:
        async with TcpNodeServer([SimNode(u) for u in range(1, 201)]) as server:
            config = parse_config(tcp_config(server.port, 200, 0.01, 2))
            totals = GatewayStats()
            stats: dict[str, NodeStats] = {}
            got: list[str] = []
            poller = BusPoller(open_bus(config.bus[0]), config.node, stats,
                               lambda node, _when, _r: got.append(node.id), totals=totals)
            await poll_for(3.0, poller)
            counts = [stats[n.id].polls for n in config.node]
            assert min(counts) >= 3, counts
            assert max(counts) <= 2 * min(counts), counts  # shared out: nobody starves, nobody hogs
            assert totals.polls_skipped["overrun"] > 0
            assert sum(stats[n.id].skipped for n in config.node) == totals.polls_skipped["overrun"]
            assert totals.readings_polled == sum(stats[n.id].readings for n in config.node)

    asyncio.run(main())


def test_closed_gate_holds_polls_back_and_counts_them() -> None:
    """While the uplink has no room nothing is polled; the slots that pass are skipped (backpressure)."""
    room = [False]

    async def main() -> None:
        async with TcpNodeServer([SimNode(1), SimNode(2)]) as server:
            config = parse_config(tcp_config(server.port, 2, 0.05, 2))
            totals = GatewayStats()
            stats: dict[str, NodeStats] = {}
            readings: list[Readings] = []

            def on_readings(_node: NodeConfig, _when: float, r: Readings) -> None:
                readings.append(r)

            poller = BusPoller(open_bus(config.bus[0]), config.node, stats, on_readings,
                               gate=Gate(lambda: room[0], recheck=0.01), totals=totals)
            task = asyncio.create_task(poller.run())
            await asyncio.sleep(0.5)
            assert readings == [] and server.requests == 0
            room[0] = True
            deadline = asyncio.get_running_loop().time() + 20
            while len(readings) < 4:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            poller.bus.close()
            assert totals.polls_skipped["backpressure"] >= 2
            # Values read from the nodes: each poll reports every register, but only the first reads them all.
            assert totals.readings_polled == sum(m.fresh for m in poller.memory.values())
            assert totals.readings_polled < sum(len(r) for r in readings)

    asyncio.run(main())


def test_rtu_retries_with_backoff_then_times_out(pty_pair, sim) -> None:
    """On a serial line a silent node is asked 1 + retries times (node override), then NodeTimeout."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            config = sim.config(gw_end, timeout=0.3, retries=0)
            bus = ModbusBus(config.bus[0])
            stats: dict[str, NodeStats] = {}
            node = config.node[0].__class__(id="lamp-1", bus="bus0", unit=1, timeout=0.1, retries=2)
            poller = BusPoller(bus, [node], stats, lambda *_: None)
            assert await poller.poll(node)
            lamp.silent = True
            assert not await poller.poll(node)
            assert (bus.stats.retries, bus.stats.timeouts) == (2, 3)  # every unanswered attempt counts
            assert "no answer" in (stats["lamp-1"].last_error or "")
            bus.close()

    asyncio.run(main())
