"""The bus's priority lock: a holder that has not used the line yet gives way to a better waiter."""

from __future__ import annotations

import asyncio

import pytest

from gateway.transport.priority_lock import ROUTINE, URGENT, PriorityLock


def test_a_routine_holder_gives_way_to_an_urgent_waiter_and_gets_the_lock_back_first() -> None:
    order: list[str] = []

    async def worker(lock: PriorityLock, name: str, priority: int) -> None:
        async with lock.hold(priority):
            order.append(name)

    async def main() -> None:
        lock = PriorityLock()
        await lock.acquire(ROUTINE)
        other_poll = asyncio.create_task(worker(lock, "poll-b", ROUTINE))
        await asyncio.sleep(0)
        assert not lock.better_waiting()  # an equal waits: no reason to give way
        command = asyncio.create_task(worker(lock, "cmd", URGENT))
        await asyncio.sleep(0)
        assert lock.better_waiting()
        await lock.give_way()
        assert lock.locked() and lock.holder == ROUTINE and not lock.better_waiting()
        order.append("poll-a")
        lock.release()
        await asyncio.gather(other_poll, command)
        assert not lock.locked()

    asyncio.run(main())
    assert order == ["cmd", "poll-a", "poll-b"]


def test_an_urgent_holder_never_gives_way() -> None:
    async def main() -> None:
        lock = PriorityLock()
        await lock.acquire(URGENT)
        waiter = asyncio.create_task(lock.acquire(URGENT))
        await asyncio.sleep(0)
        assert not lock.better_waiting()
        lock.release()
        await waiter
        assert lock.holder == URGENT
        lock.release()

    asyncio.run(main())


def test_cancelled_while_giving_way_the_lock_still_comes_back_before_the_cancellation() -> None:
    """``hold`` releases in the end: the task must hold the lock then, or it would free someone else's."""
    events: list[str] = []

    async def poll(lock: PriorityLock, ready: asyncio.Event) -> None:
        async with lock.hold(ROUTINE):
            events.append("poll holds")
            await ready.wait()
            await lock.give_way()
            events.append("poll back")  # not reached: cancelled

    async def command(lock: PriorityLock, holds: asyncio.Event) -> None:
        async with lock.hold(URGENT):
            events.append("command holds")
            holds.set()
            await asyncio.Event().wait()  # until cancelled

    async def main() -> None:
        lock = PriorityLock()
        ready = asyncio.Event()
        polling = asyncio.create_task(poll(lock, ready))
        await asyncio.sleep(0)
        holds = asyncio.Event()
        urgent = asyncio.create_task(command(lock, holds))
        await asyncio.sleep(0)
        assert lock.better_waiting()
        ready.set()
        await holds.wait()
        polling.cancel()
        for _ in range(3):
            await asyncio.sleep(0)
        assert not polling.done()  # waiting for the lock to come back, cancelled or not
        urgent.cancel()  # the command lets go of the line
        with pytest.raises(asyncio.CancelledError):
            await polling
        await asyncio.gather(urgent, return_exceptions=True)
        assert not lock.locked()

    asyncio.run(main())
    assert events == ["poll holds", "command holds"]


def test_a_kept_line_bars_worse_waiters_between_the_keepers_transactions_but_not_better_ones() -> None:
    """A poll keeping the line at ROUTINE: an update chunk (worse) waits out the whole poll, a command does not."""
    update = ROUTINE + 10
    order: list[str] = []

    async def worker(lock: PriorityLock, name: str, priority: int) -> None:
        async with lock.hold(priority):
            order.append(name)

    async def main() -> None:
        lock = PriorityLock()
        with lock.keep(ROUTINE):
            async with lock.hold(ROUTINE):
                chunk = asyncio.create_task(worker(lock, "chunk", update))
                await asyncio.sleep(0)
                order.append("poll request 1")
            await asyncio.sleep(0)  # the gap between two requests: the chunk must not get the line
            assert not lock.locked() and not chunk.done()
            async with lock.hold(ROUTINE):
                command = asyncio.create_task(worker(lock, "command", URGENT))
                await asyncio.sleep(0)
                order.append("poll request 2")
            await command  # a command is not barred: it goes at once
            async with lock.hold(ROUTINE):
                order.append("poll request 3")
            assert not chunk.done()
        await chunk  # the poll is over: the chunk gets the line
        assert not lock.locked()

    asyncio.run(main())
    assert order == ["poll request 1", "poll request 2", "command", "poll request 3", "chunk"]


def test_a_worse_acquirer_waits_for_a_kept_line_even_when_the_lock_is_free() -> None:
    async def main() -> None:
        lock = PriorityLock()
        with lock.keep(ROUTINE):
            late = asyncio.create_task(lock.acquire(ROUTINE + 10))
            await asyncio.sleep(0)
            assert not late.done() and not lock.locked()
            await lock.acquire(ROUTINE)  # an equal takes the free line at once
            lock.release()
            assert not late.done()
        await late
        assert lock.locked() and lock.holder == ROUTINE + 10
        lock.release()

    asyncio.run(main())
