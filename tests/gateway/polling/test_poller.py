"""Polling against simulated lamps: readings, intervals, offline after 3 failures, back online."""

from __future__ import annotations

import asyncio
from typing import Any

from waiting import until

from gateway.contracts import load_role
from gateway.polling.poller import BusPoller, Readings
from gateway.service.config import NodeConfig
from gateway.service.stats import NodeStats
from gateway.transport.modbus_rtu import ModbusBus

LAMP = load_role("lamp")


def make_poller(sim: Any, device: str, units: dict[str, int], interval: float = 0.05) -> tuple[
    BusPoller, dict[str, NodeStats], list[tuple[str, float, Readings]]
]:
    config = sim.config(device, units=units, interval=interval)
    got: list[tuple[str, float, Readings]] = []
    stats: dict[str, NodeStats] = {}

    def on_readings(node: NodeConfig, when: float, readings: Readings) -> None:
        got.append((node.id, when, readings))

    poller = BusPoller(
        ModbusBus(config.bus[0]), config.nodes_on("bus0"), stats, on_readings, offline_interval=0.05
    )
    return poller, stats, got


def test_poll_reports_decoded_readings(pty_pair, sim) -> None:
    """A good poll reports every register with its raw value and updates the node's state."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, power=99.9, dim_level=30)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            poller, stats, got = make_poller(sim, gw_end, {"lamp-1": 1})
            assert await poller.poll(poller.nodes[0])
            poller.bus.close()
        node_id, when, readings = got[0]
        assert node_id == "lamp-1"
        assert when > 1.7e9
        assert {reg.name: reg.value(raw) for reg, raw in readings}["power"] == 99.9
        state = stats["lamp-1"]
        assert (state.online, state.polls, state.failures) == (True, 1, 0)
        assert state.values["dim_level"] == 30
        assert state.last_poll == when

    asyncio.run(main())


def test_nodes_polled_in_turn_at_their_interval(pty_pair, sim) -> None:
    """Both nodes of a bus get polled repeatedly; sequence numbers grow."""
    gw_end, node_end = pty_pair
    lamps = [sim.lamp(1), sim.lamp(2)]

    async def main() -> None:
        async with sim.serve(node_end, lamps):
            poller, stats, got = make_poller(sim, gw_end, {"lamp-1": 1, "lamp-2": 2})
            task = asyncio.create_task(poller.run())
            await until(lambda: stats["lamp-1"].polls >= 3 and stats["lamp-2"].polls >= 3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            poller.bus.close()
        seqs = [
            {reg.name: raw for reg, raw in readings}["seq"] for node, _, readings in got if node == "lamp-1"
        ]
        assert seqs == sorted(seqs)
        assert len(set(seqs)) == len(seqs)

    asyncio.run(main())


def test_offline_after_three_failures_and_back_online(pty_pair, sim) -> None:
    """Three failed polls in a row make a node offline; the next good poll brings it back."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            poller, stats, _ = make_poller(sim, gw_end, {"lamp-1": 1})
            node = poller.nodes[0]
            state = stats["lamp-1"]
            assert await poller.poll(node)
            lamp.silent = True
            for expected_online in (True, True, False):
                assert not await poller.poll(node)
                assert state.online is expected_online
            assert "no answer" in (state.last_error or "")
            lamp.silent = False
            lamp.fail = True  # an exception response is a failure too
            assert not await poller.poll(node)
            assert "exception 4" in (state.last_error or "")
            lamp.fail = False
            assert await poller.poll(node)
            assert state.online is True
            assert (state.polls, state.failures, state.consecutive_failures) == (2, 4, 0)
            poller.bus.close()

    asyncio.run(main())


def test_wrong_role_on_the_wire_is_a_failure(pty_pair, sim) -> None:
    """A device that reports another role than configured is not decoded as a lamp."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, role=7)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            poller, stats, got = make_poller(sim, gw_end, {"lamp-1": 1})
            assert not await poller.poll(poller.nodes[0])
            poller.bus.close()
        assert got == []
        assert "reports role 7" in (stats["lamp-1"].last_error or "")

    asyncio.run(main())


def test_settings_are_read_at_start_and_after_a_command_only(pty_pair, sim) -> None:
    """Routine polls leave the settings alone; a command or a refresh through the bus makes the next poll read them."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)
    rated = LAMP["rated_power"].address

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            poller, _stats, got = make_poller(sim, gw_end, {"lamp-1": 1})
            node = poller.nodes[0]
            lamp.holding[rated] = 60
            assert await poller.poll(node)
            lamp.holding[rated] = 75  # changed behind the gateway's back (the node would count it)
            lamp.values["power"] = 12.5
            assert await poller.poll(node)
            values = {reg.name: reg.value(raw) for reg, raw in got[-1][2]}
            assert values["power"] == 12.5 and values["rated_power"] == 60  # measured, not re-read
            assert len(got[-1][2]) == len(LAMP.registers)  # every register still reported
            await poller.bus.write(1, LAMP["dim_level"].address, [40])  # a command (urgent)
            assert await poller.poll(node)
            values = {reg.name: reg.value(raw) for reg, raw in got[-1][2]}
            assert values["rated_power"] == 75 and values["dim_level"] == 40
            assert poller.memory[node.id].settings_reads == 2
            lamp.holding[rated] = 90
            assert await poller.poll(node)
            assert {reg.name: reg.value(raw) for reg, raw in got[-1][2]}["rated_power"] == 75
            poller.bus.request_full_poll(1)  # an operator's refresh: no write, everything read again
            assert await poller.poll(node)
            assert {reg.name: reg.value(raw) for reg, raw in got[-1][2]}["rated_power"] == 90
            assert poller.memory[node.id].settings_reads == 3
            poller.bus.close()

    asyncio.run(main())


def test_a_command_waits_for_one_poll_transaction_at_most(pty_pair, sim) -> None:
    """Polls flat out on a serial line; an urgent write goes next, after the transaction in progress only."""
    gw_end, node_end = pty_pair
    lamps = [sim.lamp(1), sim.lamp(2)]

    async def main() -> None:
        async with sim.serve(node_end, lamps):
            poller, stats, _got = make_poller(sim, gw_end, {"lamp-1": 1, "lamp-2": 2}, interval=0.01)
            task = asyncio.create_task(poller.run())
            await until(lambda: stats["lamp-1"].polls >= 2 and stats["lamp-2"].polls >= 2)
            waited = []
            for _ in range(5):
                before = poller.bus.stats.requests
                await poller.bus.write(2, LAMP["dim_level"].address, [55])
                waited.append(poller.bus.stats.requests - before - 1)  # transactions that went first
                await asyncio.sleep(0.02)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            poller.bus.close()
            assert all(0 <= w <= 1 for w in waited), waited
            assert lamps[1].writes[-1] == (0, [55])


def test_a_cancellation_swallowed_inside_a_poll_still_stops_the_poller(pty_pair, sim) -> None:
    """Python 3.11's wait_for (inside pymodbus) drops a cancel that meets its answer: the poller ends anyway."""
    gw_end, node_end = pty_pair

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]):
            poller, _, got = make_poller(sim, gw_end, {"lamp-1": 1})
            real = poller.bus.read_requests
            inside, swallowed = asyncio.Event(), asyncio.Event()

            async def read_requests(*args: Any, **kwargs: Any) -> Any:
                blocks = await real(*args, **kwargs)
                if not swallowed.is_set():
                    inside.set()
                    try:
                        await asyncio.sleep(3600)  # cancelled here by the test
                    except asyncio.CancelledError:
                        swallowed.set()  # and returns its answer, as wait_for does
                return blocks

            poller.bus.read_requests = read_requests  # type: ignore[method-assign]
            task = asyncio.create_task(poller.run())
            await asyncio.wait_for(inside.wait(), 20)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=20)
            assert swallowed.is_set()
            assert done == {task}, "the poller kept polling after it was cancelled"
            assert task.cancelled()
            poller.bus.close()  # the workers hand readings on after the next frame, at the latest at close
            assert len(got) == 1  # the poll in flight still reported its readings

    asyncio.run(main())


def test_polling_flat_out_hands_readings_on_while_the_next_request_is_on_the_line(pty_pair, sim) -> None:
    """The workers report a poll's readings once the next request holds the line (not in the silence before
    it); none is lost, the last one is handed on when the line closes."""
    gw_end, node_end = pty_pair
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]

    async def main() -> None:
        async with sim.serve(node_end, lamps):
            poller, stats, got = make_poller(sim, gw_end, {"lamp-1": 1, "lamp-2": 2, "lamp-3": 3}, interval=0.01)
            line_busy: list[bool] = []
            record = poller.on_readings

            def on_readings(node: NodeConfig, when: float, readings: Readings) -> None:
                line_busy.append(poller.bus._lock.locked())  # type: ignore[attr-defined]
                record(node, when, readings)

            poller.on_readings = on_readings
            task = asyncio.create_task(poller.run())
            await until(lambda: len(got) >= 10, what="ten polls reported")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            poller.bus.close()
            assert len(got) == sum(s.polls for s in stats.values())  # every good poll, once
            assert any(line_busy)  # handed on while a request held the line

    asyncio.run(main())
