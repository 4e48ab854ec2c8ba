"""The gateway's side of analytics: every good poll through the detectors, every flag into the outbox.

The daemon hands each poll to :meth:`AnalyticsFeed.check` right after the
delivery layer took it, with the same readings. Flags are stored as events of
their node (a street's energy report as an event of the street, named after
its bus), so they reach the broker through the same durable path, on
``<root>/event/<node>``, in either data profile.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import msgspec

from gateway.analytics.baselines import BaselineStore
from gateway.analytics.engine import Analytics
from gateway.analytics.flags import Flag
from gateway.analytics.settings import AnalyticsConfig
from gateway.contracts import Number, Register
from gateway.service.cancelling import cancel_and_wait
from gateway.service.config import NodeConfig

log = logging.getLogger(__name__)

__all__ = ["AnalyticsFeed", "FlagEvent", "baselines_path"]


class FlagEvent(NamedTuple):
    """A flag numbered for its node, as the outbox stores it."""

    seq: int
    time: float
    flag: Flag

    def payload(self) -> bytes:
        """The flag's CBOR map."""
        return self.flag.payload()


Store = Callable[[NodeConfig, Sequence[FlagEvent], int | None], Coroutine[Any, Any, None]]
"""Stores a node's records durably (:meth:`gateway.delivery.driver.Delivery.record_events`)."""


def baselines_path(config: AnalyticsConfig, outbox: str) -> str:
    """The baselines file: as configured, else beside the outbox, else in memory (a gateway without an outbox)."""
    if config.baselines:
        return config.baselines
    if outbox:
        path = Path(outbox)
        return str(path.with_name(f"{path.stem}-baselines.db"))
    return ":memory:"


class AnalyticsFeed:
    """Runs the detectors on the polls of a gateway and stores their flags.

    Args:
        config: ``[analytics]``.
        path: the baselines file (:func:`baselines_path`).
        store: where flags go.
    """

    def __init__(self, config: AnalyticsConfig, path: str, store: Store) -> None:
        self.analytics = Analytics(config, BaselineStore(path))
        self.store = store
        self._pending: set[asyncio.Task[None]] = set()
        self.flags = 0
        """Records raised so far."""
        self.errors = 0
        """Polls the detectors failed on (logged with their traceback)."""
        self.listeners: list[Callable[[Sequence[Flag]], None]] = []
        """Called with the records of each poll that raised any, as they are raised (the dashboard)."""

    def check(self, node: NodeConfig, when: float, readings: Sequence[tuple[Register, Number]]) -> None:
        """Judge one good poll; flags are stored in the background (in order per node)."""
        try:
            flags = self.analytics.observe_readings(node.id, node.role, node.bus, when, readings)
        except Exception:  # a detector's fault must not stop polling or delivery: the poll is already stored
            self.errors += 1
            log.exception("analytics failed on a poll of %s; the poll itself is stored and published", node.id,
                          extra={"node": node.id})
            return
        if not flags:
            return
        self.flags += len(flags)
        by_node: dict[str, list[FlagEvent]] = {}
        for flag in flags:
            seq = self.analytics.next_seq(flag.node)
            by_node.setdefault(flag.node, []).append(FlagEvent(seq, flag.time, flag))
            log.info("analytics %s on %s: %s", flag.rule, flag.node, flag.detail,
                     extra={"node": flag.node, "rule": flag.rule})
        self.analytics.save()  # the numbers handed out are kept before anything is stored under them
        for node_id, events in by_node.items():
            target = node if node_id == node.id else msgspec.structs.replace(node, id=node_id)
            task = asyncio.get_running_loop().create_task(self.store(target, events, None),
                                                          name=f"analytics-{node_id}")
            self._pending.add(task)
            task.add_done_callback(self._done)
        for listener in self.listeners:  # after the flags are on their way to the outbox
            listener(flags)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("analytics flags not stored: %s", task.exception())

    async def close(self) -> None:
        """Let the flags being stored land, keep what was learned, close the baselines file."""
        if self._pending:
            _done, late = await asyncio.wait(self._pending, timeout=5.0)
            await cancel_and_wait(list(late))
        self.analytics.close()
