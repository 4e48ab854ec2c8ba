"""The MQTT uplink: one broker connection that publishes everything and receives commands.

The uplink keeps one connection up (MQTT 5, or 3.1.1), over TLS for
``mqtts://`` URLs (the broker's certificate verified against the configured CA,
a client certificate presented if configured), trying the configured broker
URLs in turn and backing off with jitter after a whole round failed.

Every connection is a *session* (:mod:`gateway.delivery.birth`): before connecting, the
uplink asks its data source for a new session number and leaves the death
certificate ``{"online": false, "session": n}`` as its retained Will; once
connected it publishes the retained state ``{"online": true, ...}`` and the
births the source hands it, subscribes to the command topic, and only then
lets data flow.

Outgoing messages wait in a :class:`PublishQueue`. Data messages come from the
data source (:class:`~gateway.delivery.driver.Delivery`, backed by the durable outbox)
and carry the outbox ids they hold: acknowledged by the broker (QoS 1 PUBACK),
they are handed back to the source to be deleted; when a session ends, every
data message not acknowledged leaves the queue and goes back to the source,
which returns its records to the outbox to be sent again. A broker that
refuses a publish (an MQTT 5 PUBACK with a failure reason code: not
authorised, quota exceeded) does not count as having it: the session ends,
the records stay in the outbox, and the uplink backs off as after a failed
connection (MQTT 3.1.1 has no way to say no: a 3.1.1 broker that drops a
publish still acknowledges it). Other messages
(command results, node states) are not durable: they live in the queue, which
is bounded and drops the oldest when full (counted in ``stats.queue_drops``).

Each connection is a :class:`~gateway.mqtt.connection.Connection` (paho-mqtt driven from
asyncio through its public API; that module says why not aiomqtt); the queue and its
messages are in :mod:`gateway.mqtt.publish_queue`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import ssl
import time
from collections.abc import Callable
from typing import Protocol

from paho.mqtt.properties import Properties

from gateway.delivery import birth
from gateway.mqtt.connection import Connection, MqttError, PublishRefused, Will
from gateway.mqtt.publish_queue import QUEUE_SIZE, Outgoing, PublishQueue
from gateway.mqtt.topics import HOST, Topics, announces_online
from gateway.mqtt.user_properties import UserProperties
from gateway.service.config import BrokerConfig
from gateway.service.config_uplink import BrokerUrl, parse_url
from gateway.service.stats import GatewayStats

__all__ = ["QUEUE_SIZE", "DataSource", "MqttError", "Outgoing", "PublishQueue", "PublishRefused", "Uplink"]

log = logging.getLogger(__name__)

WINDOW = 32
"""Publishes allowed in flight (sent, not yet acknowledged) at once."""
BACKOFF_FIRST = 0.5
"""Seconds before the first reconnection attempt (before jitter)."""
BACKOFF_CAP = 30.0
"""Longest wait between reconnection attempts, in seconds."""
OFFLINE_TIMEOUT = 3.0
"""Seconds a hard stop (cancellation) waits for the broker to acknowledge the offline state."""
DISCONNECT_TIMEOUT = 5.0
"""Seconds to wait for the broker to take our DISCONNECT before dropping the connection."""


class DataSource(Protocol):
    """Where data messages and births come from (the delivery layer), and where their fate goes."""

    async def new_session(self) -> int:
        """A new session number, before connecting (the Will names it)."""

    async def births(self, session: int) -> list[Outgoing]:
        """The messages that open a session (births, counters), published before anything else."""

    def session_open(self, session: int, send: Callable[[Outgoing], None]) -> None:
        """Births are out: data may flow through ``send`` until :meth:`session_closed`."""

    def session_closed(self) -> None:
        """The session ended: no more data until the next :meth:`session_open`."""

    def returned(self, unsent: list[Outgoing]) -> None:
        """Data messages the broker will not acknowledge (session ended, or pushed out of the queue)."""

    def acked(self, msg: Outgoing) -> None:
        """The broker acknowledged a data message."""

    def flush(self) -> None:
        """Stopping: send what is waiting for its batch now."""


class Uplink:
    """Keeps one MQTT connection up; publishes the queue; hands commands to ``on_command``.

    Args:
        broker: broker settings (URLs, TLS, protocol version, client id, keepalive).
        topics: the gateway's topic names.
        stats: counters to update.
        on_command: called with the payload of every message on the command topic;
            it must not block (schedule work, do not do it).
        queue_size: capacity of the publish queue (per lane).
        clock: wall clock for the ``ts`` of state messages.
        source: the data source (births, durable data); None for an uplink that only relays
            what is published on it (session numbers then count from 1 in memory).
        on_host_online: called (must not block) when a consumer announces itself on ``HOST``; None: not asked.
    """

    def __init__(
        self,
        broker: BrokerConfig,
        topics: Topics,
        stats: GatewayStats,
        on_command: Callable[[bytes], None],
        *,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
        source: DataSource | None = None,
        on_host_online: Callable[[], None] | None = None,
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.stats = stats
        self.on_command = on_command
        self.clock = clock
        self.source = source
        self.on_host_online = on_host_online
        self.urls = [parse_url(u) for u in broker.urls]
        self.queue = PublishQueue(queue_size, on_drop=self._dropped)
        self.connected = asyncio.Event()
        self.tried = asyncio.Event()
        """Set once the first connection attempt has ended, with a session or without one."""
        self.url: BrokerUrl | None = None
        """The broker of the current (or last) connection."""
        self.session = 0
        """The current (or last) session number."""
        self._stopping = False
        self._stop = asyncio.Event()
        self._drain_deadline = 0.0

    def publish(
        self, topic: str, payload: bytes, *, records: int = 0, urgent: bool = False, retain: bool = False
    ) -> None:
        """Queue a QoS 1 publish; returns at once (see the module's note on delivery)."""
        self.queue.put(Outgoing(topic, payload, retain=retain, records=records, urgent=urgent))
        if records:
            self.stats.packs_queued += 1

    async def run(self) -> None:
        """Connect, publish, reconnect, until :meth:`shutdown` ends it (or cancelled).

        A lost session is resumed on the same broker after a short pause; a failed connection
        attempt moves on to the next URL at once, and a whole round of failures backs off
        (exponential, jittered, at most :data:`BACKOFF_CAP`).
        """
        current = 0  # index of the URL to try
        failures = 0  # connection attempts failed in a row
        while not self._stopping:
            url = self.urls[current]
            self.session = await self._new_session()
            conn = self._connection(url, self.session)
            established = False
            try:
                await conn.connect()  # cancelled while connecting, it leaves no half-open connection behind
                established = True
                failures = 0
                self.url = url
                try:
                    await self._session(conn, url)
                except asyncio.CancelledError:
                    await self._say_offline(conn)
                    raise
                finally:
                    await conn.disconnect(DISCONNECT_TIMEOUT)  # at once if the connection is gone already
            except PublishRefused as exc:  # the broker is there but will not take our data: as if unreachable
                failures += 1
                current = (current + 1) % len(self.urls)
                log.error("%s; the records stay in the outbox", exc)
            except MqttError as exc:
                if established:
                    log.warning("broker connection lost (%s): %s", url, exc)
                else:
                    failures += 1
                    current = (current + 1) % len(self.urls)
                    log.warning("broker %s unreachable: %s", url, exc)
            finally:
                self.tried.set()
                if self.stats.broker_connected:
                    self.stats.broker_connected = False
                    self.connected.clear()
                if self.source is not None:
                    self.source.session_closed()
                    self.source.returned(self.queue.take_data())
            if self._stopping:
                break
            if not failures:
                delay = BACKOFF_FIRST * random.uniform(0.5, 1.0)
            elif failures % len(self.urls):  # more brokers to try in this round
                delay = 0.0
            else:
                rounds = failures // len(self.urls)
                delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** min(rounds - 1, 16)) * random.uniform(0.5, 1.0)
            if delay:
                log.info("reconnecting to the broker in %.1f s", delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)

    def shutdown(self, drain: float = 2.0) -> None:
        """Stop gracefully: send what is queued (for up to ``drain`` s), publish offline, disconnect.

        Call it while :meth:`run` is running; :meth:`run` returns once done. Messages
        still queued at the deadline are lost (data messages stay in the outbox).
        """
        if self.source is not None and self.stats.broker_connected:
            self.source.flush()
        self._stopping = True
        self._drain_deadline = time.monotonic() + drain
        self.queue.close()
        self._stop.set()

    async def _new_session(self) -> int:
        if self.source is not None:
            return await self.source.new_session()
        return self.session + 1

    def _connection(self, url: BrokerUrl, session: int) -> Connection:
        return Connection(
            url.host,
            url.port,
            client_id=self.broker.client_id,
            protocol=self.broker.protocol,
            keepalive=self.broker.keepalive,
            will=Will(self.topics.state, birth.state(online=False, session=session)),
            tls=self._tls() if url.tls else None,
            window=WINDOW,
            on_message=self._received,
            clean=self.broker.session == "clean",
        )

    def _tls(self) -> ssl.SSLContext:
        """Verify the broker (its name and its chain to ``tls.ca``, or the system CAs); present our certificate."""
        tls = self.broker.tls
        context = ssl.create_default_context(cafile=tls.ca or None)
        if tls.cert:
            context.load_cert_chain(tls.cert, tls.key or None)
        return context

    async def _session(self, conn: Connection, url: BrokerUrl) -> None:
        """One connection's life: state, births, subscribe, then send until it ends (or the connection does)."""
        await conn.publish(self.topics.state, self._state(online=True), retain=True)
        if self.source is not None:
            for msg in await self.source.births(self.session):
                await conn.publish(msg.topic, msg.payload, retain=msg.retain)
                self.stats.messages_acked += 1
        if not await conn.subscribe(self.topics.cmd):
            log.error("broker refused our subscription to %s: no commands will arrive", self.topics.cmd)
        if self.on_host_online is not None and not await conn.subscribe(HOST):
            log.warning("broker refused our subscription to %s: consumers cannot ask for births", HOST)
        self.stats.broker_connected = True
        self.stats.broker_connects += 1
        self.connected.set()
        log.info(
            "broker connected: %s (MQTT %s) as %s, session %d",
            url, self.broker.protocol, self.broker.client_id or "(id assigned by the broker)", self.session,
        )
        if self.source is not None:
            self.source.session_open(self.session, self.queue.put)
        receiver = asyncio.create_task(conn.wait_closed(), name="uplink-connection")
        sender = asyncio.create_task(self._send(conn), name="uplink-send")
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _unwind(receiver, sender)  # unacknowledged messages go back first; run() says offline
            raise
        results = await _unwind(receiver, sender)
        for result in results:
            if isinstance(result, BaseExceptionGroup):  # from the sender's TaskGroup
                failed = result.subgroup(MqttError)
                if failed is not None:
                    first = _first(failed)
                    if isinstance(first, PublishRefused):
                        raise first from result
                    raise MqttError(f"publish failed: {first}") from result
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        if sender in done and self._stopping:
            await conn.publish(self.topics.state, self._state(online=False), retain=True)
            log.info("published offline state; disconnecting from the broker")

    async def _say_offline(self, conn: Connection) -> None:
        """Cancelled from outside (the gateway is going down hard): make the retained state say offline.

        The graceful DISCONNECT that follows a successful publish would suppress the Will; when the
        offline state cannot be published in time, the connection is dropped without DISCONNECT
        instead, and the broker publishes the Will (the same offline state, naming this session).
        """
        try:
            await asyncio.wait_for(
                conn.publish(self.topics.state, self._state(online=False), retain=True), OFFLINE_TIMEOUT
            )
        except (Exception, asyncio.CancelledError) as exc:
            log.warning("offline state not acknowledged (%s); leaving it to the Will", type(exc).__name__)
            conn.abort()

    def _received(self, topic: str, payload: bytes) -> None:
        if topic == self.topics.cmd:
            self.on_command(payload)  # the connection logs (and survives) a handler that raises
        elif topic == HOST and self.on_host_online is not None and announces_online(payload):
            self.on_host_online()

    async def _send(self, conn: Connection) -> None:
        """Publish the queue with up to WINDOW in flight; returns when shut down and drained.

        Whatever way this ends, every message taken from the queue and not
        acknowledged goes back to the front, in its original order (a publish
        task may be cancelled before it even starts, so its own code cannot be
        trusted to do it).
        """
        window = asyncio.Semaphore(WINDOW)
        inflight: dict[int, Outgoing] = {}  # insertion-ordered: the order taken
        try:
            async with asyncio.TaskGroup() as group:
                for number in itertools.count():
                    await window.acquire()
                    if self._stopping:
                        msg = await self._next_before_deadline()
                    else:
                        msg = await self.queue.get()
                    if msg is None:
                        window.release()
                        break
                    inflight[number] = msg
                    group.create_task(self._publish_one(conn, number, inflight, window))
            # TaskGroup exit waited for every publish in flight.
        finally:
            for msg in reversed(inflight.values()):
                self.queue.put_back(msg)

    async def _next_before_deadline(self) -> Outgoing | None:
        remaining = self._drain_deadline - time.monotonic()
        if remaining <= 0:
            if len(self.queue):
                log.warning("shutting down with %d messages unsent", len(self.queue))
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), remaining)
        except TimeoutError:
            return None

    async def _publish_one(
        self, conn: Connection, number: int, inflight: dict[int, Outgoing], window: asyncio.Semaphore
    ) -> None:
        msg = inflight[number]
        try:
            await conn.publish(msg.topic, msg.payload, retain=msg.retain, properties=self._properties(msg))
        finally:
            window.release()
        del inflight[number]  # acknowledged
        self.stats.messages_acked += 1
        if msg.entries and self.source is not None:
            self.source.acked(msg)
        elif msg.records:
            self.stats.packs_acked += 1
            self.stats.readings_acked += msg.records

    def _properties(self, msg: Outgoing) -> Properties | None:
        if not msg.properties or self.broker.protocol != "5":
            return None
        return UserProperties(msg.properties)

    def _state(self, *, online: bool) -> bytes:
        return birth.state(online=online, session=self.session, ts=self.clock())

    def _dropped(self, msg: Outgoing) -> None:
        if msg.entries and self.source is not None:  # durable: back to the outbox, nothing lost
            self.source.returned([msg])
            return
        self.stats.queue_drops += 1
        if self.stats.queue_drops == 1 or self.stats.queue_drops % 1000 == 0:
            log.warning("publish queue full: %d messages dropped so far", self.stats.queue_drops)


async def _unwind(*tasks: asyncio.Task[None]) -> list[BaseException | None]:
    """Cancel the tasks and wait until they finished (the sender puts unacknowledged messages back)."""
    for task in tasks:
        task.cancel()
    return await asyncio.gather(*tasks, return_exceptions=True)


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf exception of a (possibly nested) exception group."""
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
