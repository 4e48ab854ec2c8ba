"""The outbox for asyncio: one :class:`~gateway.delivery.outbox.Outbox` in one dedicated writer thread.

The event loop never waits on the disk: every call runs in the outbox's own
thread, one after another, in the order the loop issued them (SQLite
connections are confined to the thread that made them, and one writer is all
WAL allows anyway). ::

    outbox = await AsyncOutbox.open("outbox.db", budget_bytes=64 << 20)
    entries = await outbox.put_held(records)      # stored, and in flight
    await outbox.ack([e.id for e in entries])     # the broker has them
    await outbox.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ParamSpec, TypeVar

from gateway.delivery.outbox import DEFAULT_BUDGET_BYTES, Entry, Kind, Outbox, OutboxRecord

_T = TypeVar("_T")
_P = ParamSpec("_P")

__all__ = ["AsyncOutbox"]


class AsyncOutbox:
    """An :class:`Outbox` run in one dedicated thread, so the event loop never blocks on the disk.

    Open with ``await AsyncOutbox.open(path, ...)``; methods mirror :class:`Outbox`. A :meth:`take`
    cancelled while queued takes nothing; one cancelled while running releases its entries when done.
    """

    def __init__(self, core: Outbox, executor: ThreadPoolExecutor) -> None:
        """Wrap an Outbox created in ``executor``'s only thread (use :meth:`open`)."""
        self._core = core
        self._executor = executor

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, budget_bytes: int = DEFAULT_BUDGET_BYTES, synchronous: str = "FULL"
    ) -> AsyncOutbox:
        """Open (or create) the outbox in a new writer thread."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox")
        make = functools.partial(Outbox, path, budget_bytes=budget_bytes, synchronous=synchronous)
        try:
            core = await asyncio.get_running_loop().run_in_executor(executor, make)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(core, executor)

    @property
    def path(self) -> Path:
        """The database file."""
        return self._core.path

    async def _call(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    async def put_many(self, records: Iterable[OutboxRecord], *, cursors: Mapping[str, int] | None = None) -> int:
        """See :meth:`Outbox.put_many`; the records are collected here, in the loop's thread."""
        return await self._call(self._core.put_many, list(records), cursors=dict(cursors or {}))

    async def put_held(
        self, records: Iterable[OutboxRecord], *, cursors: Mapping[str, int] | None = None
    ) -> list[Entry]:
        """See :meth:`Outbox.put_held`. Cancelled while running, the stored entries are released when done."""
        recs = list(records)
        marks = dict(cursors or {})
        job = asyncio.get_running_loop().run_in_executor(
            self._executor, functools.partial(self._core.put_held, recs, cursors=marks)
        )
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            job.add_done_callback(self._give_back)
            raise

    async def take(
        self,
        limit: int,
        *,
        exclude_ids: Iterable[int] = (),
        historical_before: float | None = None,
        max_id: int | None = None,
    ) -> list[Entry]:
        """See :meth:`Outbox.take`."""
        skip = list(exclude_ids)
        cancelled = threading.Event()

        def run() -> list[Entry]:
            if cancelled.is_set():  # cancelled while queued: take nothing
                return []
            return self._core.take(limit, exclude_ids=skip, historical_before=historical_before, max_id=max_id)

        job = asyncio.get_running_loop().run_in_executor(self._executor, run)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            cancelled.set()
            job.add_done_callback(self._give_back)  # cancelled while taking: release once done
            raise

    def _give_back(self, job: asyncio.Future[list[Entry]]) -> None:
        """Release what a cancelled take took, in the writer thread."""
        if job.cancelled() or job.exception() is not None:
            return
        ids = [e.id for e in job.result()]
        if ids:
            with contextlib.suppress(RuntimeError):  # closed meanwhile: they come back at the next open anyway
                self._executor.submit(self._core.release, ids)

    async def ack(self, ids: Iterable[int]) -> int:
        """See :meth:`Outbox.ack`."""
        return await self._call(self._core.ack, list(ids))

    async def nack(self, ids: Iterable[int]) -> int:
        """See :meth:`Outbox.nack`."""
        return await self._call(self._core.nack, list(ids))

    async def release(self, ids: Iterable[int]) -> int:
        """See :meth:`Outbox.release`."""
        return await self._call(self._core.release, list(ids))

    async def next_session(self) -> int:
        """See :meth:`Outbox.next_session`."""
        return await self._call(self._core.next_session)

    async def remember_schemas(self, schemas: Mapping[bytes, bytes]) -> None:
        """See :meth:`Outbox.remember_schemas`."""
        await self._call(self._core.remember_schemas, dict(schemas))

    async def schemas(self) -> dict[bytes, bytes]:
        """See :meth:`Outbox.schemas`."""
        return await self._call(self._core.schemas)

    async def depth(self) -> tuple[int, int]:
        """See :meth:`Outbox.depth`."""
        return await self._call(self._core.depth)

    async def in_flight(self) -> int:
        """See :meth:`Outbox.in_flight`."""
        return await self._call(self._core.in_flight)

    async def last_id(self) -> int:
        """See :meth:`Outbox.last_id`."""
        return await self._call(self._core.last_id)

    async def stored(self) -> int:
        """See :meth:`Outbox.stored`."""
        return await self._call(self._core.stored)

    async def counters(self) -> tuple[int, int, int]:
        """See :meth:`Outbox.counters`."""
        return await self._call(self._core.counters)

    async def dropped(self) -> dict[Kind, int]:
        """See :meth:`Outbox.dropped`."""
        return await self._call(self._core.dropped)

    async def duplicates(self) -> int:
        """See :meth:`Outbox.duplicates`."""
        return await self._call(self._core.duplicates)

    async def cursors(self) -> dict[str, int]:
        """See :meth:`Outbox.cursors`."""
        return await self._call(self._core.cursors)

    async def close(self) -> None:
        """Close the outbox and let its thread end."""
        try:
            await self._call(self._core.close)
        finally:
            self._executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncOutbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
