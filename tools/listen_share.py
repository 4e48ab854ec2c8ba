"""``streetedge listen --share GROUP``: one of several consumers that split a city's data (AMQP, RabbitMQ).

MQTT 3.1.1 has no shared subscriptions, and RabbitMQ (the clustered broker of ``tools/cluster``)
refuses ``$share/...``; it routes every MQTT publish through the ``amq.topic`` exchange, with the
topic's ``/`` turned into ``.``. So the instances of a group are competing consumers of one durable
quorum queue, ``streetedge.share.<GROUP>``, bound to the data topics (compact messages and SenML
packs): each message goes to one instance, and the queue survives the loss of a broker node.
Every instance prints what it gets as ``streetedge listen`` does (SenML-JSON lines)::

    streetedge listen --share platform --amqp amqp://guest:guest@127.0.0.1:5672/ \\
        --amqp amqp://guest:guest@127.0.0.1:5673/

Births are not shared: each instance reads them from a queue of its own (exclusive, gone with its
connection), since any instance may get a compact message of any gateway. Retained births cannot be
relied on (AMQP never sees them; RabbitMQ keeps them per node), so an instance announces itself on
:data:`gateway.mqtt.topics.HOST` once its queues are bound, and every gateway publishes its births
again. A compact message that comes before its birth is held, unacknowledged, until the birth
arrives (the announcement is repeated while anything is held); nothing is dropped.

Delivery is at least once: a message is acknowledged only after its lines were written; an instance
that dies (or loses its broker node) leaves its unacknowledged messages to the others, which may
print polls that it printed already. Consumers drop duplicates by ``(node, seq)``.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel
from pika.spec import Basic, BasicProperties

from gateway.mqtt.topics import HOST, announcement
from tools.listen import PREFIX, Listener, split_topic

EXCHANGE = "amq.topic"
"""Where RabbitMQ's MQTT plugin publishes (routing key: the topic, ``/`` as ``.``)."""
PREFETCH = 200
"""Messages an instance may hold unacknowledged (those waiting for a birth included)."""
ANNOUNCE_AGAIN = 10.0
"""Seconds between announcements while compact messages wait for their birth."""
RECONNECT_PAUSE = 0.5
"""Seconds before trying the broker list again after the connection was lost."""


def routing_key(topic: str) -> str:
    """The ``amq.topic`` routing key of an MQTT topic filter (``+`` -> ``*``, ``#`` stays)."""
    return ".".join("*" if level == "+" else level for level in topic.split("/"))


def topic_of(key: str) -> str:
    """The MQTT topic of a routing key (ids never hold ``.``: the configuration forbids it)."""
    return key.replace(".", "/")


@dataclass
class _Held:
    tag: int
    topic: str
    payload: bytes


@dataclass
class SharedListener:
    """One instance of a consumer group: connect, bind, announce, print, acknowledge; reconnect on loss.

    Args:
        urls: AMQP URLs of the cluster's nodes (tried in turn).
        group: the group name; instances with the same group split the data.
        site: listen to this site only (default: every site).
        gateway: listen to this gateway only (default: every gateway).
        resolved: print resolved records rather than packs.
    """

    urls: list[str]
    group: str
    site: str | None = None
    gateway: str | None = None
    resolved: bool = False
    instance: str = field(default_factory=lambda: secrets.token_hex(4))
    connects: int = 0
    """Connections made (the first one included)."""

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("give at least one AMQP URL (--amqp)")
        if not self.group or not all(c.isalnum() or c in "_-" for c in self.group):
            raise ValueError(f"group name must be letters, digits, '_' or '-', got {self.group!r}")
        self.params = [pika.URLParameters(u) for u in self.urls]
        self.listener = Listener(resolved=self.resolved)
        self._held: dict[tuple[str, bytes], list[_Held]] = {}

    @property
    def queue(self) -> str:
        """The group's durable quorum queue."""
        return f"streetedge.share.{self.group}"

    def run(self, emit: Callable[[str], None], *, err: TextIO = sys.stderr,
            until: Callable[[], bool] = lambda: False, ready: Callable[[], None] | None = None) -> int:
        """Consume until ``until()`` is true (checked twice a second); returns payloads that could not be read.

        ``emit`` gets every line; ``ready`` is called after each (re)connection once the queues are bound and
        the announcement is out. A lost connection is made again on the next node of the list.
        """
        bad = 0
        while not until():
            try:
                connection = pika.BlockingConnection(self.params)
            except pika.exceptions.AMQPConnectionError as exc:
                print(f"streetedge listen: no broker of the list answers ({exc!r}); trying again", file=err,
                      flush=True)
                time.sleep(RECONNECT_PAUSE)
                continue
            self.connects += 1
            self._held.clear()  # unacknowledged: the broker hands them out again
            try:
                bad += self._consume(connection, emit, err, until, ready)
            except (pika.exceptions.AMQPError, OSError) as exc:
                print(f"streetedge listen: connection lost ({exc!r}); reconnecting", file=err, flush=True)
                time.sleep(RECONNECT_PAUSE)
            finally:
                if connection.is_open:
                    with contextlib.suppress(pika.exceptions.AMQPError, OSError):
                        connection.close()
        return bad

    def _consume(self, connection: pika.BlockingConnection, emit: Callable[[str], None], err: TextIO,
                 until: Callable[[], bool], ready: Callable[[], None] | None) -> int:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=PREFETCH)
        root = f"{PREFIX}/{self.site or '+'}/{self.gateway or '+'}"
        channel.queue_declare(self.queue, durable=True, arguments={"x-queue-type": "quorum"})
        for data in (f"{root}/compact", f"{root}/data/+"):
            channel.queue_bind(self.queue, EXCHANGE, routing_key(data))
        births = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(births, EXCHANGE, routing_key(f"{root}/birth"))
        bad = 0

        def on_message(ch: BlockingChannel, method: Basic.Deliver, _p: BasicProperties, body: bytes) -> None:
            nonlocal bad
            bad += self._handle(ch, method.delivery_tag, topic_of(method.routing_key), body, emit, err)

        channel.basic_consume(births, on_message)
        channel.basic_consume(self.queue, on_message)
        self._announce(channel)
        if ready is not None:
            ready()
        announced = time.monotonic()
        while not until():
            connection.process_data_events(time_limit=0.5)
            if self._held and time.monotonic() - announced > ANNOUNCE_AGAIN:
                self._announce(channel)
                announced = time.monotonic()
        return bad

    def _announce(self, channel: BlockingChannel) -> None:
        channel.basic_publish(EXCHANGE, routing_key(HOST), announcement(f"{self.group}/{self.instance}"))

    def _handle(self, channel: BlockingChannel, tag: int, topic: str, payload: bytes,
                emit: Callable[[str], None], err: TextIO) -> int:
        """Print (or hold) one message and acknowledge what is done; 1 if it could not be read, else 0."""
        wanted = self._missing_birth(topic, payload)
        if wanted is not None:
            self._held.setdefault(wanted, []).append(_Held(tag, topic, payload))
            return 0
        bad = self._print(channel, tag, topic, payload, emit, err)
        root, kind, rest = split_topic(topic)
        if kind == "birth" and not rest:
            for (held_root, birth_id) in [k for k in self._held if k[0] == root]:
                if (held_root, birth_id) in self.listener.births:
                    for held in self._held.pop((held_root, birth_id)):
                        bad += self._print(channel, held.tag, held.topic, held.payload, emit, err)
        return bad

    def _missing_birth(self, topic: str, payload: bytes) -> tuple[str, bytes] | None:
        """(root, birth id) of a compact message whose birth this instance has not seen yet."""
        root, kind, rest = split_topic(topic)
        if kind != "compact" or rest or len(payload) < 10:
            return None
        try:
            birth_id = Listener.birth_of(payload)
        except ValueError:
            return None  # malformed: _print reports it
        return None if (root, birth_id) in self.listener.births else (root, birth_id)

    def _print(self, channel: BlockingChannel, tag: int, topic: str, payload: bytes,
               emit: Callable[[str], None], err: TextIO) -> int:
        try:
            lines = self.listener.feed(topic, payload)
        except ValueError as exc:
            print(f"streetedge listen: {topic}: {exc}", file=err, flush=True)
            channel.basic_ack(tag)  # reported: a payload no instance can read stays unreadable
            return 1
        for line in lines:
            emit(line)
        channel.basic_ack(tag)
        return 0



def listen_shared(args: argparse.Namespace) -> int:
    """``streetedge listen --share GROUP --amqp URL ...``: print this instance's share until Ctrl-C or ``--count``."""
    try:
        consumer = SharedListener(args.amqp, args.share, site=args.site, gateway=args.gateway, resolved=args.resolved)
    except ValueError as exc:
        print(f"streetedge listen: {exc}", file=sys.stderr)
        return 2
    printed = 0

    def emit(line: str) -> None:
        nonlocal printed
        print(line, flush=True)
        printed += 1

    def ready() -> None:
        print(f"streetedge listen: consuming {consumer.queue} (group {args.share}) as {consumer.instance}",
              file=sys.stderr, flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        consumer.run(emit, until=lambda: args.count is not None and printed >= args.count, ready=ready)
    return 0
