"""Edge analytics on the page: each flag in the live alarm and event list, the energy saved per street and night.

The gateway hands every record its detectors raise (:class:`~gateway.analytics.flags.Flag`) to
:meth:`AnalyticsPanel.take` as it raises it. A suspected fault (kind ``flag``) becomes an ``analytics``
event of the feed, sent to every browser at once: its rule, node, baseline, observed value, evidence
(``[time, value]`` pairs) and the detector's sentence. A street's nightly energy report
(``lamp.street_energy_saved``) updates the energy table: per street, the last :data:`NIGHTS_KEPT` nights,
each with its lamps, energy used, energy at full power over the same burning hours, and the share saved.
The table is kept in the dashboard's history file, so a restarted gateway shows the last nights again.
Per-lamp reports (energy, remaining life) are not events: 250 lamps would bury the alarms every morning;
they reach the page through the street's sum, and upstream as every flag does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from gateway.analytics.flags import FLAG, Flag
from gateway.dashboard.feed import Feed
from gateway.dashboard.history import History

log = logging.getLogger(__name__)

STREET_ENERGY = "lamp.street_energy_saved"
"""The rule of a street's nightly energy report."""
NIGHTS_KEPT = 7
"""Nights of energy figures shown per street."""


class AnalyticsPanel:
    """What the page shows of the analytics: flags as events, energy saved as a table.

    Args:
        feed: the page's live feed (events and the energy table go to every browser through it).
        history: where the energy table is kept across restarts (it is read back here).
    """

    def __init__(self, feed: Feed, history: History) -> None:
        self.feed = feed
        self.history = history
        self._nights: dict[str, dict[int, dict[str, Any]]] = {}
        for row in history.energy():
            self._nights.setdefault(row["street"], {})[row["night"]] = row
        feed.energy = self.energy()
        self._writes: set[asyncio.Task[None]] = set()

    def take(self, flags: Sequence[Flag]) -> None:
        """The records the detectors just raised (from one poll): show them."""
        energy_changed = False
        for flag in flags:
            if flag.kind == FLAG:
                self.feed.add_event("analytics", node=flag.node, rule=flag.rule, at=flag.time,
                                    baseline=flag.baseline, observed=flag.observed,
                                    evidence=[list(point) for point in flag.evidence], detail=flag.detail)
            elif flag.rule == STREET_ENERGY:
                self._street_report(flag)
                energy_changed = True
        if energy_changed:
            self.feed.set_energy(self.energy())

    def _street_report(self, flag: Flag) -> None:
        figures = dict(flag.extra)
        night = int(figures["night"])
        nights = self._nights.setdefault(flag.node, {})
        row = nights[night] = {
            "street": flag.node, "night": night, "at": flag.time, "lamps": int(figures["lamps"]),
            "used_wh": figures["used_wh"], "full_wh": figures["full_wh"], "saved_wh": figures["saved_wh"],
            "share": figures["share"],
        }
        for old in sorted(nights)[:-NIGHTS_KEPT]:
            del nights[old]
        # Off the event loop: the history's lock may be held by a sampling for a few tens of milliseconds.
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.history.keep_energy, row, NIGHTS_KEPT))
        self._writes.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[None]) -> None:
        self._writes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("dashboard: energy figures not kept: %s", task.exception())

    async def flush(self) -> None:
        """Wait for the figures being written (before the history is closed)."""
        if self._writes:
            await asyncio.wait(self._writes)

    def energy(self) -> list[dict[str, Any]]:
        """The energy table: per street (by name), its nights newest first."""
        return [row for street in sorted(self._nights)
                for _, row in sorted(self._nights[street].items(), reverse=True)]
