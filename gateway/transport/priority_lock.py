"""An asyncio lock whose waiters are served by priority, then in arrival order.

A bus carries one transaction at a time. Polls queue up behind each other; a
command must not wait for every queued poll, so it asks with a better (lower)
priority and gets the bus as soon as the transaction in progress ends.

A holder that has not started its transaction yet (a poll waiting out the
line's inter-frame silence) can :meth:`PriorityLock.give_way` to a better
waiter that came meanwhile: a command's next transaction (its read-back after
its write) then goes before the poll that took the line in between.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

URGENT = 0
"""Priority of operator commands."""
ROUTINE = 10
"""Priority of periodic polls."""


class PriorityLock:
    """Mutual exclusion with priority: the lowest priority number waiting goes next."""

    def __init__(self) -> None:
        self._locked = False
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self.holder = ROUTINE
        """The priority of the current holder."""

    def locked(self) -> bool:
        """Whether someone holds the lock."""
        return self._locked

    async def acquire(self, priority: int = ROUTINE) -> None:
        """Wait for the lock; ties are served first come, first served."""
        if not self._locked and not self._waiters:
            self._locked = True
            self.holder = priority
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # The lock was handed over just as we were cancelled: pass it on.
                self.release()
            raise

    def better_waiting(self) -> bool:
        """Whether someone waits with a better (lower) priority than the holder's."""
        return any(p < self.holder and not fut.done() for p, _, fut in self._waiters)

    async def give_way(self) -> None:
        """Hand the held lock to the best waiter and wait for it back, ahead of the holder's equals.

        The lock comes back before this returns, cancelled or not: the caller
        (``hold``) releases it in the end, so it must be holding it then.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (self.holder, -next(self._order), fut))  # queued first: cannot be skipped
        self.release()
        cancelled = False
        while not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError

    def release(self) -> None:
        """Hand the lock to the best waiter, or free it."""
        if not self._locked:
            raise RuntimeError("release of an unlocked PriorityLock")
        while self._waiters:
            priority, _, fut = heapq.heappop(self._waiters)
            if not fut.done():  # skip waiters that gave up (cancelled)
                fut.set_result(None)  # ownership moves to that waiter; stays locked
                self.holder = priority
                return
        self._locked = False

    @asynccontextmanager
    async def hold(self, priority: int = ROUTINE) -> AsyncIterator[None]:
        """``async with lock.hold(priority):`` acquire, run the block, release."""
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()
