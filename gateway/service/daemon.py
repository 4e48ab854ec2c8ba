"""The gateway daemon: pollers, uplink and command router wired together.

::

    config = load_config(Path("gateway.toml"))
    asyncio.run(run_gateway(config))          # until SIGTERM / SIGINT

or, to embed it (the demo, tests)::

    gateway = Gateway(config)
    task = asyncio.create_task(gateway.run())
    ...                                        # read gateway.stats
    gateway.stop(); await task

Data flow: one :class:`~gateway.polling.poller.BusPoller` per bus reads nodes; each
good poll goes into the durable outbox (:class:`~gateway.delivery.driver.Delivery`),
which composes data messages (SenML packs on ``<root>/data/<node>``, or compact
batches on ``<root>/compact``) for the :class:`~gateway.mqtt.uplink.Uplink`; a record
leaves the outbox when the broker acknowledged it (QoS 1). Commands arriving on ``<root>/cmd`` go to the
:class:`~gateway.commands.router.CommandRouter`, whose results go back through the uplink
(ahead of telemetry) on ``<root>/result``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import cbor2
import msgspec

from gateway.analytics.feed import AnalyticsFeed, baselines_path
from gateway.commands.audit import audit_topic
from gateway.commands.router import CommandRouter
from gateway.delivery.driver import Delivery
from gateway.mqtt.topics import Topics
from gateway.mqtt.uplink import QUEUE_SIZE, Uplink
from gateway.polling.event_catchup import EventReader
from gateway.polling.poller import OFFLINE_INTERVAL, Readings
from gateway.polling.scheduler import Gate
from gateway.polling.supervisor import Polling
from gateway.service.cancelling import cancel_and_wait
from gateway.service.config import Config, NodeConfig
from gateway.service.stats import BusStats, GatewayStats, NodeStats
from gateway.transport.ble_adapter import BleRadio
from gateway.transport.ble_alarms import AlarmAcknowledger
from gateway.transport.ble_bus import GattBus
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_receiver import AdvertReceiver, receiver_for
from gateway.transport.ble_scan import BleListener, BleScannerBackend

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient

    from gateway.dashboard.server import Dashboard

log = logging.getLogger(__name__)

DRAIN = 2.0
"""Seconds a stopping gateway keeps publishing what is queued before it disconnects."""
HIGH_WATER = 1000
"""Data messages queued for the broker above which the pollers hold back (back-pressure)."""
FIRST_SESSION_WAIT = 5.0
"""Seconds polling waits at start for the first broker session, so that the first polls go out live."""


class Gateway:
    """One gateway: every configured bus polled, one broker connection, commands served.

    Args:
        config: the checked configuration (:func:`gateway.service.config.load_config`).
        queue_size: capacity of the in-memory publish queue.
        offline_interval: seconds between polls of an offline node.
        drain: seconds spent publishing queued messages when stopping.
        first_session_wait: at most this many seconds polling waits at start for the first broker
            session (it starts at once when the first connection attempt fails).
        clock: wall clock (epoch seconds) for poll times and timestamps.
        ble_backend: the bleak scanner backend for the BLE nodes; None: what ``[ble] adapter`` names (BlueZ,
            or a Bumble host on an HCI transport).
        ble_client_backend: the bleak client backend for commands to BLE nodes; None: likewise.

    Attributes:
        stats: live state for dashboards and tests (:class:`~gateway.service.stats.GatewayStats`).
        topics: the gateway's topic names.
    """

    def __init__(
        self,
        config: Config,
        *,
        queue_size: int = QUEUE_SIZE,
        offline_interval: float = OFFLINE_INTERVAL,
        drain: float = DRAIN,
        first_session_wait: float = FIRST_SESSION_WAIT,
        clock: Callable[[], float] = time.time,
        ble_backend: BleScannerBackend | None = None,
        ble_client_backend: type[BaseBleakClient] | None = None,
    ) -> None:
        self.config = config
        self.ble_backend = ble_backend
        self.ble_client_backend = ble_client_backend
        self.ble: AdvertReceiver | None = None
        """The BLE nodes' advert receiver (None before :meth:`run`, or without BLE nodes)."""
        self.topics = Topics(config.site, config.gateway)
        self.stats = GatewayStats()
        for bus in config.bus:
            self.stats.buses[bus.name] = BusStats(bus.name)
        for node in config.node:
            self.stats.nodes[node.id] = NodeStats(node.id, node.bus, node.unit, node.role)
        self.queue_size = queue_size
        self.offline_interval = offline_interval
        self.drain = drain
        self.first_session_wait = first_session_wait
        self.clock = clock
        self.uplink: Uplink | None = None
        """The running uplink (None before :meth:`run`)."""
        self.delivery: Delivery | None = None
        """The outbox and data composer (None before :meth:`run`)."""
        self.events: EventReader | None = None
        """The node event log reader (None before :meth:`run`)."""
        self.analytics: AnalyticsFeed | None = None
        """The detectors on every poll (None before :meth:`run` or with ``[analytics] enabled = false``)."""
        self.polling: Polling | None = None
        """The running buses and pollers (None before :meth:`run`)."""
        self.dashboard: Dashboard | None = None
        """The cabinet dashboard, when ``[dashboard]`` enables it (None before :meth:`run`)."""
        self.high_water = min(HIGH_WATER, queue_size)
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask :meth:`run` to finish: polling stops, queued data drains, offline state is published."""
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`stop`; a crash of any part ends the whole gateway (with the error)."""
        cfg = self.config
        polling = Polling(
            cfg, self.stats, self._on_readings, on_state=self._on_node_state, gate=Gate(self._room),
            offline_interval=self.offline_interval, clock=self.clock,
        )
        buses = polling.buses  # updated in place by reload(), so the router sees new buses
        delivery = Delivery(cfg, self.topics, self.stats, clock=self.clock)
        await delivery.open()
        self.delivery = delivery
        self.events = EventReader(buses, delivery.record_events, await delivery.cursors())
        if cfg.analytics.enabled:
            path = baselines_path(cfg.analytics, cfg.delivery.outbox)
            self.analytics = AnalyticsFeed(cfg.analytics, path, delivery.record_events)
        uplink = Uplink(
            cfg.broker, self.topics, self.stats, self._on_command,
            queue_size=self.queue_size, clock=self.clock, source=delivery,
            on_host_online=delivery.request_births,
        )
        self.ble = receiver_for(cfg.ble, self.stats.nodes, self._on_readings, on_state=self._on_node_state,
                                clock=self.clock)
        ble_bus = acknowledger = None
        radio = BleRadio("" if self.ble_backend else cfg.ble.adapter)  # a backend handed in wins
        scanner_backend, client_backend = self.ble_backend or radio.scanner, self.ble_client_backend or radio.client
        if self.ble is not None:  # the command counters share the replay windows' file
            sender = GattSender(self.ble.windows, backend=client_backend, client_args=radio.args)
            ble_bus = GattBus(cfg.ble, sender)
            self.ble.on_alarm = acknowledger = AlarmAcknowledger(sender)
        router = CommandRouter(
            cfg, buses, self.stats,
            lambda payload: uplink.publish(self.topics.result, payload, urgent=True),
            publish_audit=lambda payload: uplink.publish(audit_topic(self.topics.root), payload),
            rebirth=delivery.rebirth,
            ble_bus=ble_bus,
            node_events=delivery.record_events,  # roll-out steps go out as the nodes' events
            clock=self.clock,
        )
        self.uplink = uplink
        self._router = router
        if cfg.dashboard.enabled:  # aiohttp is imported only by gateways that serve the page
            from gateway.dashboard.server import start_dashboard

            self.dashboard = await start_dashboard(cfg, self.stats, router, lambda: len(uplink.queue))
            if self.dashboard is not None and self.analytics is not None:
                self.analytics.listeners.append(self.dashboard.analytics.take)
        log.info(
            "gateway %s/%s starting: %d bus(es), %d node(s), broker %s",
            cfg.site, cfg.gateway, len(cfg.bus), len(cfg.node), cfg.broker.url,
        )
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    *([group.create_task(BleListener(self.ble, backend=scanner_backend, scanner_args=radio.args).run(),
                                         name="ble")]
                      if self.ble is not None else []),
                    group.create_task(router.run(), name="commands"),
                    group.create_task(delivery.run(), name="delivery"),
                    group.create_task(uplink.run(), name="uplink"),
                ]
                try:
                    await self._start_polling(polling, uplink)
                    await self._stop.wait()
                    log.info("gateway stopping")
                    await self._wind_down(polling, delivery, uplink, tasks[-1])
                finally:
                    # The task group cancels its tasks once; a cancellation can be lost (see
                    # gateway.service.cancelling), so end them here, for sure, on every way out.
                    await cancel_and_wait(tasks)
        finally:
            if self.dashboard is not None:
                await self.dashboard.stop()
            await polling.stop()  # also when cancelled: no poller outlives the gateway
            if acknowledger is not None:
                await acknowledger.close()
            router.close()
            await radio.close()
            await self.events.close()
            if self.analytics is not None:
                await self.analytics.close()
            await delivery.close()
            log.info("gateway stopped")

    async def _start_polling(self, polling: Polling, uplink: Uplink) -> None:
        """Start polling once the first session is open, so that its polls are live data, not backlog.

        Polls stored before a session are replayed as historical backlog; with the broker
        unreachable (the first attempt failed, or no session within ``first_session_wait``)
        polling starts anyway, because the outbox keeps what is polled meanwhile.
        """
        waits = {asyncio.create_task(event.wait()) for event in (uplink.connected, uplink.tried, self._stop)}
        try:
            await asyncio.wait(waits, timeout=self.first_session_wait, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
        if self._stop.is_set():
            return
        polling.start()
        self.polling = polling
        if polling.config is not self.config:  # reloaded while waiting
            await polling.apply(self.config)

    async def _wind_down(self, polling: Polling, delivery: Delivery, uplink: Uplink, link: asyncio.Task[None]) -> None:
        """The graceful part of a stop: polls end and reach the disk, what is queued goes to the broker.

        Bounded whatever the broker does: a connected uplink gets ``drain`` seconds (and a few more for
        the offline state and DISCONNECT); one that is not connected (unreachable, half-open, refusing)
        has nothing to drain and is cancelled at once.
        """
        await polling.stop()
        await delivery.settle()  # the last polls are on disk before the last messages go
        connected = self.stats.broker_connected
        uplink.shutdown(self.drain)
        if connected:
            _, pending = await asyncio.wait({link}, timeout=self.drain + 5.0)
            if pending:
                log.warning("broker did not answer while stopping; closing the connection")
        await cancel_and_wait([link])

    async def reload(self, config: Config) -> list[str]:
        """Apply a new (already checked) configuration while running; returns what changed.

        Buses, nodes and groups change in place (see :class:`~gateway.polling.supervisor.Polling`);
        the broker, site, gateway id, HTTP and logging settings are read at start only:
        a change there is reported as needing a restart and not applied.
        """
        old = self.config
        notes = [
            f"{key} changed: takes effect after a restart"
            for key in ("site", "gateway", "broker", "http", "delivery", "dashboard", "ble")
            if getattr(old, key) != getattr(config, key)
        ]
        keep = msgspec.structs.replace(
            config, site=old.site, gateway=old.gateway, broker=old.broker, http=old.http, delivery=old.delivery,
            dashboard=old.dashboard, ble=old.ble,  # the BLE receiver and GATT bus keep the nodes they started with
        )
        self.config = keep
        if self.polling is not None:
            notes += await self.polling.apply(keep)
        if self.delivery is not None:  # a new node table: births again
            self.delivery.reconfigure(keep)
        router = getattr(self, "_router", None)
        if router is not None:  # commands resolve targets against the new nodes and groups
            notes += router.reconfigure(keep)
        return notes

    def _room(self) -> bool:
        """Back-pressure: may the pollers go on? Not while the disk, or the connected broker, lags behind.

        Polls wait in memory until the outbox writer stores them and, while connected,
        until their live message goes out: more than ``high_water`` waiting means the
        disk or the broker does not keep up, and polling on would only grow memory or
        the backlog (the skipped slots are counted instead).
        """
        delivery = self.delivery
        if delivery is not None and delivery.waiting >= self.high_water:
            return False
        uplink = self.uplink
        if uplink is None or not self.stats.broker_connected:
            return True  # while disconnected the queue keeps the newest data, dropping the oldest
        return len(uplink.queue) < self.high_water

    def _on_node_state(self, node: NodeConfig, state: NodeStats) -> None:
        if self.uplink is None:
            return
        payload: dict[str, object] = {"online": bool(state.online), "ts": self.clock()}
        if not state.online and state.last_error:
            payload["error"] = state.last_error
        self.uplink.publish(self.topics.node_state(node.id), cbor2.dumps(payload), urgent=True, retain=True)

    def _on_command(self, payload: bytes) -> None:
        self._router.submit(payload)

    def _on_readings(self, node: NodeConfig, when: float, readings: Readings) -> None:
        assert self.delivery is not None and self.events is not None  # set before any poller runs
        self.delivery.record(node, when, readings)
        self.events.check(node, when, readings)
        if self.analytics is not None:
            self.analytics.check(node, when, readings)


async def run_gateway(config: Config, *, stop: asyncio.Event | None = None) -> None:
    """Run a gateway until SIGTERM/SIGINT (or until ``stop`` is set), then stop it cleanly.

    Clean stop: polling ends, queued messages get :data:`DRAIN` seconds to reach
    the broker, the retained state turns ``{"online": false}``, the connection
    closes.
    """
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # pymodbus logs every unanswered request at ERROR; the poller reports the
        # same failures per node, with context (offline/online), so keep it quiet.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    gateway = Gateway(config)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            log.debug("cannot handle %s here; stop the gateway through `stop`", sig.name)

    async def watch() -> None:
        await stop.wait()
        gateway.stop()

    watcher = asyncio.create_task(watch())
    try:
        await gateway.run()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        for sig in installed:
            loop.remove_signal_handler(sig)
