"""A roll-out's journal: each node's state into the roll-out store, each step out as an event of the node.

:meth:`RolloutJournal.note` returns at once (the delivery's progress calls
come from inside a bus transaction); the records are written one after
another, in the order noted: first the node event into the outbox, then the
state into the roll-out store (in the store's writer thread). A crash between
the two repeats the step after the restart, and its event carries the same
seq (:mod:`gateway.update.rollout_events`): nothing is lost, a duplicate is
recognisable. A record that cannot be written is logged; the roll-out goes on.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence

from gateway.errors import GatewayError
from gateway.update.rollout import NodeState, Target
from gateway.update.rollout_events import RolloutStep, step_of
from gateway.update.rollout_store import RolloutStore

__all__ = ["RecordSteps", "RolloutJournal"]

log = logging.getLogger(__name__)

RecordSteps = Callable[[str, Sequence[RolloutStep]], Awaitable[None]]
"""Stores steps as events of the node with the given id (the outbox)."""


class RolloutJournal:
    """The journal of roll-out ``number`` (command ``command``, package image hash ``package``).

    Args:
        store: the roll-out store.
        number: the roll-out's number there.
        command: the update command's id.
        package: the image's SHA-256, hex.
        record: stores node events (the outbox).
        writer: the one thread the store is written from.
        clock: wall clock for the events' times.
    """

    def __init__(self, store: RolloutStore, number: int, command: str, package: str, record: RecordSteps,
                 writer: concurrent.futures.Executor, clock: Callable[[], float]) -> None:
        self.store = store
        self.number = number
        self.command = command
        self.package = package
        self.record = record
        self.writer = writer
        self.clock = clock
        self._last: asyncio.Future[None] | None = None

    def note(self, target: Target, state: NodeState) -> None:
        """Record ``target``'s new state (and announce its step); written after every earlier note."""
        self._last = asyncio.ensure_future(self._write(self._last, target, state, self.clock()))

    async def flush(self) -> None:
        """Wait until every noted state is written (or failed to be, logged)."""
        if self._last is not None:
            await asyncio.shield(self._last)

    async def _write(self, before: asyncio.Future[None] | None, target: Target, state: NodeState, when: float) -> None:
        if before is not None:
            await asyncio.wait([before])  # in order; its failure was logged there
        step = step_of(state.state)
        try:
            if step is not None:
                await self.record(target.node, [RolloutStep.of(self.number, step, time=when, command=self.command,
                                                               package=self.package, detail=state.detail)])
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.writer, self.store.node, self.number, target.node, state)
        except (OSError, sqlite3.Error, GatewayError, KeyError, RuntimeError) as exc:  # Runtime: writer shut down
            log.error("roll-out %s: %s %s not recorded (%s)", self.command, target.node, state.state, exc)
