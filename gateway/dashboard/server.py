"""The dashboard as a part of the running gateway: its web server, feed and history, started and stopped.

::

    dashboard = Dashboard(config, gateway.stats, router, queue_depth)
    await dashboard.start()          # serving on dashboard.url
    ...
    await dashboard.stop()

Everything runs in the gateway's own event loop (aiohttp's server is asyncio); the disk work of the
history and the password hashing go to worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import ssl
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from gateway.dashboard.analytics import AnalyticsPanel
from gateway.dashboard.app import make_app
from gateway.dashboard.auth import LoginLimiter, Sessions, Users
from gateway.dashboard.commands import PageOperator, Router, load_key
from gateway.dashboard.feed import Feed
from gateway.dashboard.history import History, Sample
from gateway.dashboard.view import plotted
from gateway.service.cancelling import cancel_and_wait
from gateway.service.config import Config
from gateway.service.stats import GatewayStats

log = logging.getLogger(__name__)


class Dashboard:
    """The cabinet dashboard of one gateway.

    Args:
        config: the gateway configuration (its ``[dashboard]`` section, nodes, groups, keys).
        stats: the gateway's live state.
        router: the gateway's command router (the page's commands go through it); None: the page only shows.
        queue_depth: messages waiting for the broker now.
        clock: wall clock.
    """

    def __init__(
        self, config: Config, stats: GatewayStats, router: Router | None,
        queue_depth: Callable[[], int] = lambda: 0, clock: Callable[[], float] = time.time,
    ) -> None:
        cfg = config.dashboard
        self.config = config
        self.stats = stats
        self.clock = clock
        self.history = History(cfg.history, cfg.history_hours)
        self.feed = Feed(config, stats, queue_depth, clock)
        self.analytics = AnalyticsPanel(self.feed, self.history)
        """Give it the analytics flags as they are raised (:meth:`AnalyticsPanel.take`)."""
        operator = None
        if router is not None and cfg.key_id:
            operator = PageOperator(router, load_key(Path(cfg.key_file)), cfg.key_id, self.history, clock)
        self.tls: ssl.SSLContext | None = None
        if cfg.tls_cert:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(cfg.tls_cert, cfg.tls_key)
        self.app = make_app(
            feed=self.feed, history=self.history, users=Users(cfg.user), sessions=Sessions(cfg.session_hours * 3600),
            limiter=LoginLimiter(), operator=operator, secure=self.tls is not None,
        )
        self.port = cfg.port
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        """Where the page is (after :meth:`start`)."""
        host = self.config.dashboard.listen
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        return f"{'https' if self.tls else 'http'}://{shown}:{self.port}/"

    async def start(self) -> None:
        """Bind and serve in the background (OSError if the address is taken)."""
        cfg = self.config.dashboard
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, cfg.listen, cfg.port, ssl_context=self.tls)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]  # the port bound (cfg.port 0 picks one)
        self._tasks = [asyncio.create_task(self.feed.run(), name="dashboard-feed"),
                       asyncio.create_task(self._sample(), name="dashboard-history")]
        log.info("dashboard on %s (%d user(s))", self.url, len(cfg.user))

    async def stop(self) -> None:
        """Close the event streams, stop serving, close the history."""
        await cancel_and_wait(self._tasks)
        self._tasks = []
        self.feed.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.analytics.flush()
        self.history.close()

    async def _sample(self) -> None:
        """Every ``history_interval`` seconds, one sample of each plotted value of every online node."""
        interval = self.config.dashboard.history_interval
        while True:
            await self.history.add_async(self.clock(), self.samples())
            await asyncio.sleep(interval)

    def samples(self) -> list[Sample]:
        """The plotted values of the online nodes now."""
        found: list[Sample] = []
        for node in self.stats.nodes.values():
            if node.online:
                for name in plotted(node.role):
                    value = node.values.get(name)
                    if isinstance(value, int | float):
                        found.append((node.id, node.role, name, float(value)))
        return found


async def start_dashboard(
    config: Config, stats: GatewayStats, router: Router | None, queue_depth: Callable[[], int],
) -> Dashboard | None:
    """The started dashboard when ``[dashboard]`` enables it, else None; a gateway runs on without it if it
    cannot start (its address is taken, its key, certificate or history file unusable), and says why."""
    if not config.dashboard.enabled:
        return None
    try:
        dashboard = Dashboard(config, stats, router, queue_depth)
        await dashboard.start()
    except (OSError, ValueError, ssl.SSLError, sqlite3.Error) as exc:  # address, key, certificate, history file
        log.error("dashboard not started (%s:%d): %s; running without it",
                  config.dashboard.listen, config.dashboard.port, exc)
        return None
    return dashboard
