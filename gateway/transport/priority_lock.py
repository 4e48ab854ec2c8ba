"""An asyncio lock whose waiters are served by priority, then in arrival order.

A bus carries one transaction at a time. Polls queue up behind each other; a
command must not wait for every queued poll, so it asks with a better (lower)
priority and gets the bus as soon as the transaction in progress ends.
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

    def locked(self) -> bool:
        """Whether someone holds the lock."""
        return self._locked

    async def acquire(self, priority: int = ROUTINE) -> None:
        """Wait for the lock; ties are served first come, first served."""
        if not self._locked and not self._waiters:
            self._locked = True
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

    def release(self) -> None:
        """Hand the lock to the best waiter, or free it."""
        if not self._locked:
            raise RuntimeError("release of an unlocked PriorityLock")
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():  # skip waiters that gave up (cancelled)
                fut.set_result(None)  # ownership moves to that waiter; stays locked
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
