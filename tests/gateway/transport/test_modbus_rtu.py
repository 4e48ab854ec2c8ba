"""ModbusBus against a pymodbus-simulated lamp on a real pty pair."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import serial
from waiting import until

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.polling.poller import decode
from gateway.service.config import BusConfig
from gateway.transport.modbus_rtu import BusUnavailable, ModbusBus, NodeError, NodeTimeout
from gateway.transport.priority_lock import ROUTINE, URGENT, PriorityLock
from protocols.modbus.crc import put_crc

LAMP = load_role("lamp")


def bus_on(device: str, **kw: Any) -> ModbusBus:
    kw.setdefault("retries", 1)
    return ModbusBus(BusConfig(name="bus0", device=device, parity="N", timeout=0.3, **kw))


def test_read_node_one_request_per_table_decodes_through_the_map(pty_pair, sim) -> None:
    """Every register of a lamp comes back in one read per table, decoded by the register map."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, dim_level=40, relay=False, power=12.5, temperature=-12.3, energy=70000)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = bus_on(gw_end)
            blocks = await bus.read_node(1, LAMP)
            bus.close()
            assert set(blocks) == {HOLDING, INPUT}
            values = {reg.name: reg.value(raw) for reg, raw in decode(LAMP, blocks)}
            assert values["dim_level"] == 40
            assert values["relay"] is False
            assert values["power"] == 12.5
            assert values["temperature"] == -12.3
            assert values["energy"] == 70000
            assert values["seq"] == 1001
            assert bus.stats.requests == 2

    asyncio.run(main())


def test_write_reaches_the_node(pty_pair, sim) -> None:
    """write() puts the words into the node's holding registers."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = bus_on(gw_end)
            await bus.write(1, LAMP["dim_level"].address, [55])
            bus.close()
        assert lamp.holding[0] == 55

    asyncio.run(main())


def test_exception_response_is_node_error_with_code(pty_pair, sim) -> None:
    """A value the node refuses comes back as NodeError carrying Modbus exception code 3."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = bus_on(gw_end)
            with pytest.raises(NodeError) as info:
                await bus.write(1, LAMP["dim_level"].address, [150])
            assert info.value.code == 3
            lamp.fail = True
            with pytest.raises(NodeError) as info:
                await bus.read_node(1, LAMP)
            assert info.value.code == 4
            bus.close()
            assert bus.stats.errors == 2

    asyncio.run(main())


def test_silent_unit_is_node_timeout(pty_pair, sim) -> None:
    """A unit nobody answers for raises NodeTimeout, chained to the pymodbus error."""
    gw_end, node_end = pty_pair

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]):
            bus = bus_on(gw_end)
            with pytest.raises(NodeTimeout) as info:
                await bus.read_node(9, LAMP)
            assert info.value.__cause__ is not None
            assert "unit 9 on bus0" in str(info.value)
            # The bus is still usable afterwards.
            await bus.read_node(1, LAMP)
            bus.close()

    asyncio.run(main())


def test_broadcast_reaches_every_node(pty_pair, sim) -> None:
    """A broadcast (unit 0) writes every node, and the next request still gets its answer."""
    gw_end, node_end = pty_pair
    lamps = [sim.lamp(1), sim.lamp(2), sim.lamp(3)]

    async def main() -> None:
        async with sim.serve(node_end, lamps):
            bus = bus_on(gw_end)
            await bus.broadcast(LAMP["dim_level"].address, [20])
            start, words = await bus.read_table(2, LAMP, HOLDING)
            bus.close()
            assert words[LAMP["dim_level"].address - start] == 20
            assert bus.stats.broadcasts == 1
        assert [lamp.holding[0] for lamp in lamps] == [20, 20, 20]

    asyncio.run(main())


def test_missing_device_is_bus_unavailable(tmp_path) -> None:
    """A serial device that does not exist raises BusUnavailable naming bus and device."""

    async def main() -> None:
        bus = bus_on(str(tmp_path / "ttyNOPE"))
        with pytest.raises(BusUnavailable) as info:
            await bus.read_node(1, LAMP)
        assert "bus0" in str(info.value)
        assert "ttyNOPE" in str(info.value)
        # Reopening is rate-limited: the next attempt fails at once, without touching the device.
        with pytest.raises(BusUnavailable, match="retrying"):
            await bus.read_node(1, LAMP)

    asyncio.run(main())


def test_parity_on_a_pty_is_explained(pty_pair) -> None:
    """Linux ptys refuse parity E; the error says so instead of a bare termios error."""
    gw_end, _ = pty_pair

    async def main() -> None:
        bus = ModbusBus(BusConfig(name="bus0", device=gw_end, parity="E", timeout=0.1))
        with pytest.raises(BusUnavailable, match="parity N only"):
            await bus.read_node(1, LAMP)

    asyncio.run(main())


def test_priority_lock_serves_urgent_waiters_first() -> None:
    """Waiters get the lock by priority, then in arrival order; a cancelled waiter is skipped."""
    order: list[str] = []

    async def worker(lock: PriorityLock, name: str, priority: int) -> None:
        async with lock.hold(priority):
            order.append(name)
            await asyncio.sleep(0)

    async def main() -> None:
        lock = PriorityLock()
        await lock.acquire()
        tasks = [
            asyncio.create_task(worker(lock, "poll-a", ROUTINE)),
            asyncio.create_task(worker(lock, "poll-b", ROUTINE)),
            asyncio.create_task(worker(lock, "gone", URGENT)),
            asyncio.create_task(worker(lock, "cmd", URGENT)),
        ]
        await asyncio.sleep(0.01)
        tasks[2].cancel()
        await asyncio.sleep(0.01)
        lock.release()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not lock.locked()

    asyncio.run(main())
    assert order == ["cmd", "poll-a", "poll-b"]


def test_a_poll_still_waiting_out_the_silence_gives_the_line_to_a_command(pty_pair, sim) -> None:
    """The poll holds the line but has sent nothing: the command that came meanwhile goes first."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, power=12.5)
    done: list[str] = []

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = bus_on(gw_end)
            await bus.read_requests(1, [(INPUT, 0, 4)])  # opened, and its timing known
            bus.wire.quiet_until = time.monotonic() + 1.0  # as after a broadcast: the poll will wait with the line

            async def poll() -> None:
                words = await bus.read_requests(1, [(INPUT, LAMP["power"].address, 1)], response_timeout=0.5)
                done.append(f"poll {words[0][0]}")

            async def command() -> None:
                await bus.write(1, LAMP["dim_level"].address, [33])
                done.append("command")

            polling = asyncio.create_task(poll())
            while not bus._lock.locked():
                assert not polling.done()
                await asyncio.sleep(0)
            commanding = asyncio.create_task(command())
            while not bus._lock.better_waiting():
                assert not polling.done(), "the poll went out before the command was queued"
                await asyncio.sleep(0.01)
            await asyncio.gather(polling, commanding)
            assert bus._timeout == 0.5  # the poll's own response timeout, back after the command's
            bus.close()

    asyncio.run(main())
    assert done == ["command", "poll 125"]
    assert lamp.writes == [(0, [33])]


def test_work_after_send_runs_once_the_next_frame_is_written_before_its_answer(pty_pair, sim) -> None:
    """A poll's follow-up work waits for the next frame, runs while the node answers, and is never lost."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = bus_on(gw_end)
            await bus.read_requests(1, [(HOLDING, 0, 2)])  # opens the line
            answered_when_run: list[int] = []
            bus.after_send(lambda: answered_when_run.append(bus.stats.requests))
            assert answered_when_run == []  # not at once: it waits for the next frame
            before = bus.stats.requests
            await bus.write(1, LAMP["dim_level"].address, [55])
            assert answered_when_run == [before]  # it ran before the write's answer was handled
            assert bus.stats.requests == before + 1

            ran: list[str] = []
            bus.after_send(lambda: ran.append("idle"))  # no frame follows: it runs anyway
            await until(lambda: ran, within=20, what="the work left for a frame that never came")
            bus.after_send(lambda: ran.append("closed"))
            bus.close()  # closing the line hands it on at once
            assert ran == ["idle", "closed"]

    asyncio.run(main())


def test_each_frame_written_is_reported_with_the_answer_heard_before_it_t35_earlier(pty_pair, sim) -> None:
    """``wire.on_write`` is told, for every frame, when the line's last bytes arrived and when the frame left:
    the second request follows the first answer's last bytes by t3.5 at least, and the stamps say so."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)
    stamps: list[tuple[float, float]] = []

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = bus_on(gw_end, baud=115200)
            bus.wire.on_write = lambda heard, written: stamps.append((heard, written))
            began = time.monotonic()
            await bus.read_requests(1, [(HOLDING, 0, 2), (INPUT, 0, 3)])
            ended = time.monotonic()
            bus.close()
            assert bus.wire.timed  # pymodbus's transport was found: frames are written by the wire clock
            assert len(stamps) == 2, stamps
            (_, first), (heard, second) = stamps
            assert began <= first < heard < second <= ended  # the first answer came between the two frames
            assert second - heard >= bus.silence  # t3.5 (1.75 ms above 19200 bit/s) from the bytes seen

    asyncio.run(main())


def test_a_read_back_without_answer_is_retried_with_the_line_free(pty_pair, sim) -> None:
    """A command's read-back (read_table) tries again after an unanswered attempt, as a poll does."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, dim_level=35)
    lamp.silent = True  # its first answer is lost

    async def main() -> None:
        async with sim.serve(node_end, [lamp]):
            bus = bus_on(gw_end, backoff=1.0, retries=2)
            reading = asyncio.create_task(bus.read_table(1, LAMP, HOLDING))
            await until(lambda: bus.stats.timeouts >= 1, within=20, what="the first attempt's timeout")
            assert not reading.done()
            lamp.silent = False
            start, words = await reading
            assert start == 0 and words[LAMP["dim_level"].address] == 35
            assert bus.stats.retries >= 1
            bus.close()
            lamp.silent = True
            quick = bus_on(gw_end, backoff=0.0, retries=1)
            with pytest.raises(NodeTimeout):  # never answered: given up after the retries
                await quick.read_table(1, LAMP, HOLDING)
            assert quick.stats.timeouts == 2
            quick.close()

    asyncio.run(main())


def test_a_file_record_write_answered_with_another_records_echo_is_not_taken_as_stored(pty_pair) -> None:
    """A write's answer is its echo (function 21): the echo of another record (a late answer to an earlier
    write) raises NodeError, where counting it as stored would make an update skip a chunk."""
    gw_end, node_end = pty_pair
    port = serial.Serial(node_end, timeout=10)
    answered: list[bytes] = []

    def node() -> None:
        # unit, 21, byte count, then the sub-request (file, record, length, data); the CRC last
        head = port.read(3)
        frame = head + port.read(head[2] + 2)
        answer = bytearray(frame[:-2])
        answer[6] ^= 0x01  # the record number's low byte: the echo of the neighbouring record
        answer += b"\0\0"
        put_crc(answer, len(answer) - 2)
        answered.append(bytes(answer))
        port.write(answer)

    thread = threading.Thread(target=node, daemon=True)
    thread.start()

    async def main() -> None:
        bus = bus_on(gw_end, retries=0)
        try:
            with pytest.raises(NodeError, match="does not echo it"):
                await bus.file_record(1, 3, 4, data=b"image chunk 0004")
        finally:
            bus.close()

    try:
        asyncio.run(main())
        thread.join(5)
        assert answered, "the node never saw the write"
    finally:
        port.close()
