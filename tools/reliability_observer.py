"""The independent observer of :mod:`tools.reliability`: a paho subscriber that keeps every message and
reads back every ``(node, kind, seq)`` the gateway published."""

from __future__ import annotations

import collections
import threading
from typing import Any

import cbor2
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.delivery import compact
from protocols import senml

SITE, GATEWAY = "rel", "gw"
ROOT = f"streetedge/v1/{SITE}/{GATEWAY}"
READING, EVENT = 0, 1  # gateway.outbox.Kind
Key = tuple[str, int, int]  # (node, kind, seq): readings and events count their seqs apart


class Observer:
    """An independent MQTT client (paho, persistent session, QoS 1) that keeps every message of the gateway."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[str, bytes]] = []
        self.sessions: list[int] = []
        """Session numbers of the gateway births received, in order (filled by :meth:`records`)."""
        self._counters: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="reliability-observer", clean_session=False,
                                  protocol=paho.MQTTv311)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(ROOT + "/#", qos=1)
        self.client.reconnect_delay_set(1, 2)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def count(self) -> int:
        """Messages received so far."""
        with self._lock:
            return len(self.messages)

    def received(self) -> tuple[collections.Counter[Key], dict[str, Any]]:
        """Every (node, kind, seq) received with its number of copies, and the last delivery counters."""
        seqs: collections.Counter[Key] = collections.Counter(key for key, _ in self.records())
        return seqs, self._counters

    def records(self) -> list[tuple[Key, tuple[Any, ...]]]:
        """Every record received, in order, with its values (names and values, times left out)."""
        with self._lock:
            messages = list(self.messages)
        births: dict[bytes, dict[str, Any]] = {}
        out: list[tuple[Key, tuple[Any, ...]]] = []
        self._counters = {}
        self.sessions = []
        pending = []
        for topic, payload in messages:
            if topic == ROOT + "/birth":
                body = cbor2.loads(payload)
                births[body["birth"]] = body
                self.sessions.append(int(body.get("session", 0)))
            elif topic == ROOT + "/delivery":
                self._counters = cbor2.loads(payload)
            elif topic.startswith(ROOT + "/event/"):
                node = topic.rsplit("/", 1)[1]
                records = senml.resolve(senml.from_labels(cbor2.loads(payload)))
                for record in records:
                    if record["n"].endswith(":event_seq"):
                        out.append(((node, EVENT, int(record["v"])), _values(records)))
            elif topic == ROOT + "/compact" or topic.startswith(ROOT + "/data/"):
                pending.append((topic, payload))
        for topic, payload in pending:
            if topic.endswith("/compact"):
                packs = compact.to_senml(payload, births[cbor2.loads(payload)[3]])
            else:
                packs = [senml.from_labels(cbor2.loads(payload))]
            for pack in packs:
                records = senml.resolve(pack)
                node = records[0]["n"].split(":")[-2]
                seq = int(next(r["v"] for r in records if r["n"].endswith(":seq")))
                out.append(((node, READING, seq), _values(records)))
        return out

    def close(self) -> None:
        """Disconnect (the broker forgets nothing: the session is persistent)."""
        # Disconnect first: it wakes paho's thread, which would otherwise sleep out its 1 s select.
        self.client.disconnect()
        self.client.loop_stop()


def _values(records: list[dict[str, Any]]) -> tuple[Any, ...]:
    """What a record says, without its time: two copies of one record say the same."""
    return tuple(sorted((r["n"], repr(r.get("v", r.get("vb", r.get("vs", r.get("vd")))))) for r in records))
