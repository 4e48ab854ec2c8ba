"""A command's way through the gateway, timed: the stages of its result's ``ms`` map, and the durability wait."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time

__all__ = ["Timing", "durable"]


class Timing:
    """Where an executed command's time went: milliseconds per stage, for the result's ``ms`` map.

    Stages: ``verify`` (envelope, signature, scope, replay lookup, planning),
    ``durable`` (replay claim and ``accepted`` entry on disk), ``bus`` (the
    writes, waiting for the line included), ``readback`` (the confirming
    reads), ``record`` (result and ``executed`` entry on disk), and ``total``
    from arrival to publication.
    """

    __slots__ = ("_at", "_start", "stages")

    def __init__(self, start: float | None = None) -> None:
        self._start = time.perf_counter() if start is None else start
        self._at = self._start
        self.stages: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        """The time since the last lap (or the start) goes to ``stage``, less what :meth:`add` gave others."""
        now = time.perf_counter()
        self.stages[stage] = self.stages.get(stage, 0.0) + (now - self._at)
        self._at = now

    def add(self, stage: str, seconds: float) -> None:
        """Count ``seconds`` for ``stage`` (a part of the next lap)."""
        self.stages[stage] = self.stages.get(stage, 0.0) + seconds
        self._at += seconds

    def breakdown(self) -> dict[str, float]:
        """Milliseconds per stage (rounded to 0.01) and ``total``."""
        out = {stage: round(seconds * 1000, 2) for stage, seconds in self.stages.items()}
        out["total"] = round((time.perf_counter() - self._start) * 1000, 2)
        return out


async def durable(*writes: concurrent.futures.Future[None]) -> None:
    """Wait until every write is on disk; the first failure is raised once all have settled."""
    results = await asyncio.gather(*(asyncio.wrap_future(w) for w in writes), return_exceptions=True)
    for outcome in results:
        if isinstance(outcome, BaseException):
            raise outcome
