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
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt
from paho.mqtt.properties import Properties

from gateway.delivery import birth
from gateway.errors import GatewayError
from gateway.mqtt.topics import Topics
from gateway.mqtt.user_properties import UserProperties
from gateway.service.config import BrokerConfig
from gateway.service.config_uplink import BrokerUrl, parse_url
from gateway.service.stats import GatewayStats

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
"""Default capacity of the publish queue, in messages (one per poll of a node)."""
WINDOW = 32
"""Publishes allowed in flight (sent, not yet acknowledged) at once."""
BACKOFF_FIRST = 0.5
"""Seconds before the first reconnection attempt (before jitter)."""
BACKOFF_CAP = 30.0
"""Longest wait between reconnection attempts, in seconds."""
OFFLINE_TIMEOUT = 3.0
"""Seconds a hard stop (cancellation) waits for the broker to acknowledge the offline state."""
DISCONNECT_TIMEOUT = 5.0
"""Seconds to wait for the broker to close after our DISCONNECT before dropping the connection."""


@dataclass(frozen=True)
class Outgoing:
    """One message for the broker.

    ``records`` counts the readings of a data message; ``entries`` are the outbox ids it carries (a
    data message from the data source); ``properties`` are MQTT 5 user properties.
    """

    topic: str
    payload: bytes
    retain: bool = False
    records: int = 0
    urgent: bool = False
    entries: tuple[int, ...] = ()
    properties: tuple[tuple[str, str], ...] = ()


class PublishRefused(GatewayError, aiomqtt.MqttError):  # noqa: N818 - the name the API promises
    """The broker answered a publish with a failure reason code (MQTT 5): it does not have the message."""

    def __init__(self, topic: str, reason: str) -> None:
        super().__init__(f"broker refused a publish on {topic}: {reason}")
        self.topic = topic
        self.reason = reason


class _Client(aiomqtt.Client):
    """aiomqtt's client, except that a PUBACK carrying a failure reason code raises :class:`PublishRefused`.

    aiomqtt 2.x ignores PUBACK reason codes, so an MQTT 5 broker's "not authorized" would count as
    delivered and the record would leave the outbox. ``publish`` mirrors aiomqtt 2.5's own (it needs the
    packet id to learn the reason code), using its private pending-call helpers; tests/gateway/mqtt/test_tls.py
    checks the behaviour against Mosquitto's ACLs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._refused: dict[int, str] = {}
        # WINDOW bounds the publishes in flight: aiomqtt's warning beyond 10 would only cost a log line each.
        self.pending_calls_threshold = WINDOW + 8

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        if reason_code is not None and getattr(reason_code, "is_failure", False):
            self._refused[mid] = str(reason_code)
        super()._on_publish(client, userdata, mid, reason_code, properties)

    async def publish(  # type: ignore[override]
        self,
        topic: str,
        payload: bytes | None = None,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - aiomqtt's signature
    ) -> None:
        """Publish and wait for the broker's acknowledgement (QoS 1); PublishRefused if it says no."""
        info = self._client.publish(topic, payload, qos, retain, properties)
        if info.rc != 0:  # MQTT_ERR_SUCCESS
            raise aiomqtt.MqttCodeError(info.rc, "Could not publish message")
        if not info.is_published():
            confirmation = asyncio.Event()
            with self._pending_call(info.mid, confirmation, self._pending_publishes):
                await self._wait_for(confirmation.wait(), timeout=timeout)
        refused = self._refused.pop(info.mid, None)
        if refused is not None:
            raise PublishRefused(topic, refused)

    def abort(self) -> None:
        """Drop the connection without a DISCONNECT packet, so that the broker publishes our Will."""
        self._client._sock_close()  # paho's own close: unregisters the socket from aiomqtt's loop first
        if not self._disconnected.done():
            self._disconnected.set_result(None)

    async def __aexit__(self, *exc_info: Any) -> None:
        """Disconnect gracefully, but never wait without bound for a broker that does not close."""
        try:
            await asyncio.wait_for(super().__aexit__(*exc_info), DISCONNECT_TIMEOUT)
        except TimeoutError:
            log.warning("broker did not close after DISCONNECT; dropping the connection")
            self.abort()


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


class PublishQueue:
    """A bounded FIFO of outgoing messages that drops the oldest when full.

    Urgent messages (command results) have their own lane that is always served
    first and is never pushed out by telemetry.

    Args:
        maxsize: capacity of each lane.
        on_drop: called once per dropped message.
    """

    def __init__(self, maxsize: int = QUEUE_SIZE, on_drop: Callable[[Outgoing], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._urgent: deque[Outgoing] = deque()
        self._routine: deque[Outgoing] = deque()
        self._on_drop = on_drop
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._urgent) + len(self._routine)

    def put(self, msg: Outgoing) -> None:
        """Queue a message at the back of its lane, dropping that lane's oldest when full."""
        lane = self._urgent if msg.urgent else self._routine
        if len(lane) >= self.maxsize:
            dropped = lane.popleft()
            if self._on_drop is not None:
                self._on_drop(dropped)
        lane.append(msg)
        self._ready.set()

    def put_back(self, msg: Outgoing) -> None:
        """Return an unacknowledged message to the front, to be sent first after reconnecting."""
        lane = self._urgent if msg.urgent else self._routine
        if len(lane) >= self.maxsize:
            if self._on_drop is not None:
                self._on_drop(msg)
            return
        lane.appendleft(msg)
        self._ready.set()

    def take_data(self) -> list[Outgoing]:
        """Remove and return every data message (one carrying outbox entries), in queue order."""
        data = [m for m in self._routine if m.entries]
        if data:
            self._routine = deque(m for m in self._routine if not m.entries)
        return data

    def close(self) -> None:
        """No more waiting: :meth:`get` returns None once the queue is empty."""
        self._closed = True
        self._ready.set()

    async def get(self) -> Outgoing | None:
        """The next message (urgent lane first); None when closed and empty."""
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if self._routine:
                return self._routine.popleft()
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()


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
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.stats = stats
        self.on_command = on_command
        self.clock = clock
        self.source = source
        self.urls = [parse_url(u) for u in broker.urls]
        self.queue = PublishQueue(queue_size, on_drop=self._dropped)
        self.connected = asyncio.Event()
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
            client = self._client(url, self.session)
            established = False
            try:
                async with client:
                    established = True
                    failures = 0
                    self.url = url
                    try:
                        await self._session(client, url)
                    except asyncio.CancelledError:
                        await self._say_offline(client)
                        raise
            except asyncio.CancelledError:
                if not established:  # cancelled while connecting: leave no half-open connection behind
                    client.abort()
                raise
            except PublishRefused as exc:  # the broker is there but will not take our data: as if unreachable
                failures += 1
                current = (current + 1) % len(self.urls)
                log.error("%s; the records stay in the outbox", exc)
            except aiomqtt.MqttError as exc:
                if established:
                    log.warning("broker connection lost (%s): %s", url, exc)
                else:
                    failures += 1
                    current = (current + 1) % len(self.urls)
                    log.warning("broker %s unreachable: %s", url, exc)
            finally:
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

    def _client(self, url: BrokerUrl, session: int) -> _Client:
        will = aiomqtt.Will(self.topics.state, birth.state(online=False, session=session), qos=1, retain=True)
        version = aiomqtt.ProtocolVersion.V5 if self.broker.protocol == "5" else aiomqtt.ProtocolVersion.V311
        return _Client(
            url.host,
            url.port,
            identifier=self.broker.client_id or None,
            protocol=version,
            will=will,
            keepalive=self.broker.keepalive,
            tls_context=self._tls() if url.tls else None,
            # Small packets (PUBACKs, results) must not wait for Nagle + delayed ACK: ~40 ms each.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    def _tls(self) -> ssl.SSLContext:
        """Verify the broker (its name and its chain to ``tls.ca``, or the system CAs); present our certificate."""
        tls = self.broker.tls
        context = ssl.create_default_context(cafile=tls.ca or None)
        if tls.cert:
            context.load_cert_chain(tls.cert, tls.key or None)
        return context

    async def _session(self, client: aiomqtt.Client, url: BrokerUrl) -> None:
        """One connection's life: state, births, subscribe, then send and receive until it ends."""
        await client.publish(self.topics.state, self._state(online=True), qos=1, retain=True)
        if self.source is not None:
            for msg in await self.source.births(self.session):
                await client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
                self.stats.messages_acked += 1
        await client.subscribe(self.topics.cmd, qos=1)
        self.stats.broker_connected = True
        self.stats.broker_connects += 1
        self.connected.set()
        log.info(
            "broker connected: %s (MQTT %s) as %s, session %d",
            url, self.broker.protocol, client.identifier, self.session,
        )
        if self.source is not None:
            self.source.session_open(self.session, self.queue.put)
        receiver = asyncio.create_task(self._receive(client), name="uplink-receive")
        sender = asyncio.create_task(self._send(client), name="uplink-send")
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _unwind(receiver, sender)  # unacknowledged messages go back first; run() says offline
            raise
        results = await _unwind(receiver, sender)
        for result in results:
            if isinstance(result, BaseExceptionGroup):  # from the sender's TaskGroup
                failed = result.subgroup(aiomqtt.MqttError)
                if failed is not None:
                    first = _first(failed)
                    if isinstance(first, PublishRefused):
                        raise first from result
                    raise aiomqtt.MqttError(f"publish failed: {first}") from result
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        if sender in done and self._stopping:
            await client.publish(self.topics.state, self._state(online=False), qos=1, retain=True)
            log.info("published offline state; disconnecting from the broker")

    async def _say_offline(self, client: _Client) -> None:
        """Cancelled from outside (the gateway is going down hard): make the retained state say offline.

        The graceful DISCONNECT that follows a successful publish would suppress the Will; when the
        offline state cannot be published in time, the connection is dropped without DISCONNECT
        instead, and the broker publishes the Will (the same offline state, naming this session).
        """
        try:
            await asyncio.wait_for(
                client.publish(self.topics.state, self._state(online=False), qos=1, retain=True), OFFLINE_TIMEOUT
            )
        except (Exception, asyncio.CancelledError) as exc:
            log.warning("offline state not acknowledged (%s); leaving it to the Will", type(exc).__name__)
            client.abort()

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if message.topic.value != self.topics.cmd:
                continue
            payload = message.payload
            data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            try:
                self.on_command(data)
            except Exception:  # a bug in a handler must not cut the broker connection
                log.exception("command handler failed")

    async def _send(self, client: aiomqtt.Client) -> None:
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
                    group.create_task(self._publish_one(client, number, inflight, window))
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
        self, client: aiomqtt.Client, number: int, inflight: dict[int, Outgoing], window: asyncio.Semaphore
    ) -> None:
        msg = inflight[number]
        try:
            await client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain, properties=self._properties(msg))
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
