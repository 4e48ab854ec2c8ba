"""An independent MQTT observer (paho-mqtt, not the gateway's aiomqtt) for tests, benches and HIL.

It records every message on a topic filter so that a test can wait, with a
deadline, for the first message that matches a predicate, or a bench can count
what the broker delivered. :class:`Polls` reads a gateway's data messages in
either profile (compact batches against the gateway birth they cite, or one
SenML pack per poll) as one poll of one node at a time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import cbor2
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.delivery import compact
from protocols import senml


@dataclass(frozen=True)
class Seen:
    """One message as received: topic, payload, retained flag, arrival time (monotonic)."""

    topic: str
    payload: bytes
    retain: bool
    at: float


class MqttWatch:
    """Subscribe to ``topic`` (QoS 1) on ``host:port`` and keep what arrives.

    Args:
        host: broker address.
        port: broker port.
        topic: topic filter, e.g. ``streetedge/v1/site/gw/#``.
        protocol: "5" or "3.1.1".
        keep: whether to store payloads (a bench that only counts sets ``on_message``
            and ``keep=False`` to stay lean).
        on_message: called from paho's thread for every message.
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        *,
        protocol: str = "5",
        keep: bool = True,
        on_message: Callable[[Seen], None] | None = None,
    ) -> None:
        version = paho.MQTTv5 if protocol == "5" else paho.MQTTv311
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=version)
        self.seen: list[Seen] = []
        self._keep = keep
        self._hook = on_message
        self._cond = threading.Condition()
        subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        if not subscribed.wait(10):
            self.close()
            raise TimeoutError(f"broker {host}:{port} did not confirm the subscription to {topic}")

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        seen = Seen(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
        if self._hook is not None:
            self._hook(seen)
        if self._keep:
            with self._cond:
                self.seen.append(seen)
                self._cond.notify_all()

    def mark(self) -> int:
        """A position in the record: pass it as ``after`` to wait only for newer messages."""
        with self._cond:
            return len(self.seen)

    def snapshot(self) -> list[Seen]:
        """The messages recorded so far, oldest first (a copy)."""
        with self._cond:
            return list(self.seen)

    def wait_for(self, match: Callable[[Seen], bool], *, within: float = 15.0, after: int = 0) -> Seen:
        """The first recorded message at index >= ``after`` that ``match`` accepts; waits up to ``within`` s."""
        deadline = time.monotonic() + within
        index = after
        with self._cond:
            while True:
                while index < len(self.seen):
                    if match(self.seen[index]):
                        return self.seen[index]
                    index += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching message within {within} s ({len(self.seen)} seen)")
                self._cond.wait(left)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish QoS 1 and wait until the broker acknowledged it."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)

    def close(self) -> None:
        """Disconnect and stop paho's thread."""
        # Disconnect first: it wakes paho's thread, which would otherwise sleep out its 1 s select.
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> MqttWatch:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


Poll = dict[str, dict[str, Any]]
"""One poll of one node: resolved SenML records by register name (``{"power": {"n": ..., "v": 41.5, ...}}``)."""


class Polls:
    """A gateway's polls as an observer sees them upstream, whichever data profile the gateway uses.

    ``watch`` must see ``<root>/#`` (at least ``birth``, ``compact`` and ``data/+``): compact messages
    are read against the gateway birth they cite, the latest one seen with that id.

    Args:
        watch: the observer.
        root: the gateway's topic root, ``streetedge/v1/<site>/<gateway>``.
    """

    def __init__(self, watch: MqttWatch, root: str) -> None:
        self.watch = watch
        self.root = root

    def of(self, msg: Seen, node: str) -> list[Poll]:
        """The polls of ``node`` in one message, oldest first (none if it is not a data message)."""
        if msg.topic == f"{self.root}/data/{node}":
            packs = [senml.from_labels(cbor2.loads(msg.payload))]
        elif msg.topic == f"{self.root}/compact":
            item = cbor2.loads(msg.payload)
            birth = self._birth(item[3]) if isinstance(item, list) and len(item) == 6 else None
            if birth is None:
                raise AssertionError(f"compact message for a birth never seen on {self.root}/birth")
            prefix = f"{compact.URN_PREFIX}{birth['site']}:{node}:"
            packs = [p for p in compact.to_senml(msg.payload, birth) if p and p[0].get("bn") == prefix]
        else:
            return []
        polls = [{r["n"].rsplit(":", 1)[-1]: r for r in senml.resolve(p)} for p in packs]
        return sorted(polls, key=lambda poll: min(r["t"] for r in poll.values()))

    def wait(self, node: str, ok: Callable[[Poll], bool] = lambda p: True, *, within: float = 15.0,
             after: int = 0, since: float = 0.0) -> Poll:
        """The newest poll of ``node`` taken at or after ``since`` (epoch s) for which ``ok`` holds, in the
        first data message at index >= ``after`` that has one; waits up to ``within`` s."""
        found: list[Poll] = []

        def match(msg: Seen) -> bool:
            hits = [p for p in self.of(msg, node) if min(r["t"] for r in p.values()) >= since and ok(p)]
            found[:] = hits[-1:]
            return bool(hits)

        self.watch.wait_for(match, within=within, after=after)
        return found[0]

    def next(self, node: str, ok: Callable[[Poll], bool] = lambda p: True, *, within: float = 15.0) -> Poll:
        """The newest poll of ``node`` taken from now on for which ``ok`` holds (see :meth:`wait`)."""
        return self.wait(node, ok, within=within, after=self.watch.mark(), since=time.time())

    def _birth(self, birth_id: bytes) -> dict[str, Any] | None:
        for msg in reversed(self.watch.snapshot()):
            if msg.topic == f"{self.root}/birth":
                body: dict[str, Any] = cbor2.loads(msg.payload)
                if body.get("birth") == birth_id:
                    return body
        return None


class DataCount:
    """Readings in a gateway's data messages of either profile, counted as they arrive (an ``on_message`` hook).

    Subscribe it to ``<root>/#``: it keeps the gateway births it sees to read compact messages by.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self._births: dict[bytes, dict[str, Any]] = {}
        self._value = 0
        self._lock = threading.Lock()

    def __call__(self, seen: Seen) -> None:
        if seen.topic == f"{self.root}/birth":
            body = cbor2.loads(seen.payload)
            self._births[body["birth"]] = body
            return
        if seen.topic == f"{self.root}/compact":
            message = compact.decode(seen.payload, self._births[cbor2.loads(seen.payload)[3]])
            n = sum(len(raws) for _, _, raws in message.rows)
        elif seen.topic.startswith(f"{self.root}/data/"):
            n = len(cbor2.loads(seen.payload))
        else:
            return
        with self._lock:
            self._value += n

    def value(self) -> int:
        """Readings counted so far."""
        with self._lock:
            return self._value
