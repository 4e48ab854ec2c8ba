"""An asyncio lock whose waiters are served by priority, then in arrival order.

A bus carries one transaction at a time. Polls queue up behind each other; a
command must not wait for every queued poll, so it asks with a better (lower)
priority and gets the bus as soon as the transaction in progress ends.

A holder that has not started its transaction yet (a poll waiting out the
line's inter-frame silence) can :meth:`PriorityLock.give_way` to a better
waiter that came meanwhile: a command's next transaction (its read-back after
its write) then goes before the poll that took the line in between.

A sequence of transactions that belong together (a poll's requests) can
:meth:`PriorityLock.keep` the line at its priority: between them the lock
goes to no waiter with a worse priority (an update chunk), so the sequence is
not stretched by one; waiters as good or better (polls, commands) still go.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

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
        self._kept: list[int] = []  # priorities of the sequences keeping the line (see keep)
        self.holder = ROUTINE
        """The priority of the current holder."""

    def locked(self) -> bool:
        """Whether someone holds the lock."""
        return self._locked

    async def acquire(self, priority: int = ROUTINE) -> None:
        """Wait for the lock; ties are served first come, first served."""
        if not self._locked and not self._barred(priority):
            # Free with no one eligible waiting (release hands over to eligible waiters directly).
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
        """Hand the lock to the best waiter not barred by a :meth:`keep`, or free it."""
        if not self._locked:
            raise RuntimeError("release of an unlocked PriorityLock")
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiters:
            priority, _, fut = self._waiters[0]
            if fut.done():  # skip waiters that gave up (cancelled)
                heapq.heappop(self._waiters)
                continue
            if self._barred(priority):
                break  # the best waiter is barred, and so is everyone behind it
            heapq.heappop(self._waiters)
            fut.set_result(None)  # ownership moves to that waiter; stays locked
            self._locked = True
            self.holder = priority
            return
        self._locked = False

    def _barred(self, priority: int) -> bool:
        """Whether a waiter of ``priority`` must wait for a sequence that keeps the line."""
        return bool(self._kept) and priority > min(self._kept)

    @contextmanager
    def keep(self, priority: int = ROUTINE) -> Iterator[None]:
        """``with lock.keep(priority):`` between the block's transactions, waiters worse than ``priority`` wait.

        The block still takes the lock for each transaction (``hold``); in the gaps the lock
        stays free for waiters as good as ``priority`` or better, not for the others, which
        are served once the block ends.
        """
        self._kept.append(priority)
        try:
            yield
        finally:
            self._kept.remove(priority)
            if not self._locked:
                self._hand_over()

    @asynccontextmanager
    async def hold(self, priority: int = ROUTINE) -> AsyncIterator[None]:
        """``async with lock.hold(priority):`` acquire, run the block, release."""
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()
