"""An independent MQTT observer (paho-mqtt, not the gateway's aiomqtt) for tests, benches and HIL.

It records every message on a topic filter so that a test can wait, with a
deadline, for the first message that matches a predicate, or a bench can count
what the broker delivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


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
        self.client.loop_stop()
        self.client.disconnect()

    def __enter__(self) -> MqttWatch:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
