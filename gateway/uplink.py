"""The MQTT uplink: one broker connection that publishes everything and receives commands.

Outgoing messages wait in a :class:`PublishQueue` between the producers (poller,
command router) and the broker connection. The uplink keeps reconnecting with
jittered exponential backoff, announces itself with a retained birth state, and
leaves a retained Will that tells everyone when it vanished.

Delivery guarantee, and its limit (read this before relying on it)
    Publishes use QoS 1 and count as delivered only when the broker acknowledged
    them. A message whose acknowledgement was lost with the connection goes back
    to the front of the queue and is sent again (so a subscriber may see it
    twice: ``(node, seq)`` lets it drop the duplicate). But the queue lives in
    memory and is bounded: when the broker is unreachable long enough for the
    queue to fill, the OLDEST messages are dropped and counted in
    ``stats.queue_drops``, and whatever is queued is lost if the process dies.
    A durable outbox (SQLite) replaces this queue in a later issue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiomqtt
import cbor2

from gateway.config import BrokerConfig
from gateway.stats import GatewayStats
from gateway.topics import Topics

log = logging.getLogger(__name__)

QUEUE_SIZE = 10_000
"""Default capacity of the publish queue, in messages (one per poll of a node)."""
WINDOW = 16
"""Publishes allowed in flight (sent, not yet acknowledged) at once."""
BACKOFF_FIRST = 0.5
"""Seconds before the first reconnection attempt (before jitter)."""
BACKOFF_CAP = 30.0
"""Longest wait between reconnection attempts, in seconds."""


@dataclass(frozen=True)
class Outgoing:
    """One message for the broker. ``records`` counts the SenML records of a data pack."""

    topic: str
    payload: bytes
    retain: bool = False
    records: int = 0
    urgent: bool = False


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
        broker: broker settings (URL, protocol version, client id, keepalive).
        topics: the gateway's topic names.
        stats: counters to update.
        on_command: called with the payload of every message on the command topic;
            it must not block (schedule work, do not do it).
        queue_size: capacity of the publish queue (per lane).
        clock: wall clock for the ``ts`` of state messages.
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
    ) -> None:
        self.broker = broker
        self.topics = topics
        self.stats = stats
        self.on_command = on_command
        self.clock = clock
        self.queue = PublishQueue(queue_size, on_drop=self._dropped)
        self.connected = asyncio.Event()
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
        """Connect, publish, reconnect, until :meth:`shutdown` ends it (or cancelled)."""
        attempt = 0
        while not self._stopping:
            client = self._client()
            try:
                async with client:
                    attempt = 0
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if self.stats.broker_connected:
                    log.warning("broker connection lost: %s", exc)
                else:
                    log.warning("broker %s unreachable: %s", self.broker.url, exc)
            finally:
                if self.stats.broker_connected:
                    self.stats.broker_connected = False
                    self.connected.clear()
            if self._stopping:
                break
            delay = min(BACKOFF_CAP, BACKOFF_FIRST * 2**attempt) * random.uniform(0.5, 1.0)
            attempt = min(attempt + 1, 16)
            log.info("reconnecting to the broker in %.1f s", delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def shutdown(self, drain: float = 2.0) -> None:
        """Stop gracefully: send what is queued (for up to ``drain`` s), publish offline, disconnect.

        Call it while :meth:`run` is running; :meth:`run` returns once done. Messages
        still queued at the deadline are lost (and logged).
        """
        self._stopping = True
        self._drain_deadline = time.monotonic() + drain
        self.queue.close()
        self._stop.set()

    def _client(self) -> aiomqtt.Client:
        will = aiomqtt.Will(self.topics.state, cbor2.dumps({"online": False}), qos=1, retain=True)
        version = aiomqtt.ProtocolVersion.V5 if self.broker.protocol == "5" else aiomqtt.ProtocolVersion.V311
        return aiomqtt.Client(
            self.broker.host,
            self.broker.port,
            identifier=self.broker.client_id or None,
            protocol=version,
            will=will,
            keepalive=self.broker.keepalive,
            # Small packets (PUBACKs, results) must not wait for Nagle + delayed ACK: ~40 ms each.
            socket_options=((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),),
        )

    async def _session(self, client: aiomqtt.Client) -> None:
        """One connection's life: birth, subscribe, then send and receive until it ends."""
        await client.publish(self.topics.state, self._state(online=True), qos=1, retain=True)
        await client.subscribe(self.topics.cmd, qos=1)
        self.stats.broker_connected = True
        self.stats.broker_connects += 1
        self.connected.set()
        log.info(
            "broker connected: %s (MQTT %s) as %s", self.broker.url, self.broker.protocol, client.identifier
        )
        receiver = asyncio.create_task(self._receive(client), name="uplink-receive")
        sender = asyncio.create_task(self._send(client), name="uplink-send")
        try:
            done, _ = await asyncio.wait({receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # Cancelled from outside (the gateway is going down hard): the graceful
            # DISCONNECT that follows would suppress the Will, so say "offline" ourselves.
            await _unwind(receiver, sender)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client.publish(self.topics.state, self._state(online=False), qos=1, retain=True), 1.0
                )
            raise
        results = await _unwind(receiver, sender)
        for result in results:
            if isinstance(result, BaseExceptionGroup):  # from the sender's TaskGroup
                failed = result.subgroup(aiomqtt.MqttError)
                if failed is not None:
                    raise aiomqtt.MqttError(f"publish failed: {_first(failed)}") from result
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
        if sender in done and self._stopping:
            await client.publish(self.topics.state, self._state(online=False), qos=1, retain=True)
            log.info("published offline state; disconnecting from the broker")

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
            await client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
        finally:
            window.release()
        del inflight[number]  # acknowledged
        self.stats.messages_acked += 1
        if msg.records:
            self.stats.packs_acked += 1
            self.stats.readings_acked += msg.records

    def _state(self, *, online: bool) -> bytes:
        return cbor2.dumps({"online": online, "ts": self.clock()})

    def _dropped(self, msg: Outgoing) -> None:
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
