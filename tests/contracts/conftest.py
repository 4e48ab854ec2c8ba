"""Real parts for the contract tests: paho driven through its external-loop API, a proxy, a pty pair.

Each contract test pins one behaviour of a dependency (paho-mqtt, Mosquitto, cbor2, pymodbus) that the
gateway relies on, on the versions ``pyproject.toml`` allows. They call the dependency directly, not the
gateway's wrappers, so a failure names the dependency that changed. Mosquitto, plain or with an ACL,
comes from tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode


class Driven:
    """A paho client driven only through its documented external-loop API, as gateway/mqtt/connection.py does.

    ``connect()`` runs with no socket callbacks (so paho writes CONNECT itself); then the socket
    callbacks are set and :meth:`run_until` multiplexes ``socket()`` with ``select()``, calling
    ``loop_read()``, ``loop_write()`` (while ``want_write()``) and ``loop_misc()``.
    """

    def __init__(self, *, protocol: int = paho.MQTTv5, client_id: str = "", **kwargs: Any) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol, **kwargs)
        self.connack: tuple[Any, ReasonCode] | None = None
        self.published: dict[int, ReasonCode] = {}
        self.subscribed: dict[int, list[ReasonCode]] = {}
        self.disconnected: ReasonCode | None = None
        self.socket_closed = False
        self.messages: list[paho.MQTTMessage] = []
        # Set as paho's on_* callback attributes, as gateway/mqtt/connection.py registers its callbacks.
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda _c, _u, mid, rc, _p: self.published.__setitem__(mid, rc)
        self.client.on_subscribe = lambda _c, _u, mid, rcs, _p: self.subscribed.__setitem__(mid, rcs)
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)

    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack = (flags, reason)

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.disconnected = reason

    def connect(self, host: str, port: int, **kwargs: Any) -> None:
        """Connect (paho writes CONNECT itself), then take over the socket and wait for CONNACK."""
        self.client.connect(host, port, keepalive=kwargs.pop("keepalive", 30), **kwargs)
        self.client.on_socket_close = lambda *_a: setattr(self, "socket_closed", True)
        self.client.on_socket_register_write = lambda *_a: None  # run_until asks want_write() itself
        self.client.on_socket_unregister_write = lambda *_a: None
        self.run_until(lambda: self.connack is not None)

    def run_until(self, done: Callable[[], bool], within: float = 30.0) -> None:
        """Drive the client until ``done()``; fail if the socket closes first or nothing happens in time."""
        deadline = time.monotonic() + within
        while not done():
            assert time.monotonic() < deadline, "the condition did not come true in time"
            sock = self.client.socket()
            assert sock is not None, f"the connection closed ({self.disconnected})"
            writers = [sock] if self.client.want_write() else []
            readable, writable, _ = select.select([sock], writers, [], 0.05)
            if readable:
                self.client.loop_read()
            if writable and self.client.socket() is not None:
                self.client.loop_write()
            self.client.loop_misc()

    def publish(self, topic: str, payload: bytes, **kwargs: Any) -> ReasonCode:
        """Publish QoS 1 and return the reason code that on_publish reported."""
        info = self.client.publish(topic, payload, qos=1, **kwargs)
        assert info.rc == paho.MQTT_ERR_SUCCESS
        self.run_until(lambda: info.mid in self.published)
        return self.published[info.mid]

    def subscribe(self, topic: str) -> list[ReasonCode]:
        rc, mid = self.client.subscribe(topic, qos=1)
        assert rc == paho.MQTT_ERR_SUCCESS and mid is not None
        self.run_until(lambda: mid in self.subscribed)
        return self.subscribed[mid]


@pytest.fixture
def driven() -> Iterator[Callable[..., Driven]]:
    """``driven(protocol=..., client_id=...)`` -> a :class:`Driven` paho client (its socket closed after)."""
    made: list[Driven] = []

    def make(**kwargs: Any) -> Driven:
        made.append(Driven(**kwargs))
        return made[-1]

    yield make
    for d in made:
        sock = d.client.socket()
        if sock is not None:
            sock.close()


class MqttProxy:
    """A TCP proxy between one client and a broker that counts PUBLISHes and can hold back the broker's packets.

    ``hold(kinds)`` keeps packets of those MQTT types (4 = PUBACK, 13 = PINGRESP...) from the broker in a
    buffer until ``release()``; ``publishes`` counts PUBLISH packets that reached the broker;
    ``most_unacked`` is the largest number of PUBLISHes forwarded whose PUBACK the client had not yet got.
    """

    def __init__(self, broker_port: int) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._broker_port = broker_port
        self._lock = threading.Lock()
        self._held_kinds: frozenset[int] = frozenset()
        self._held: list[bytes] = []
        self._to_client: socket.socket | None = None
        self.publishes = 0
        self.acks = 0
        self.most_unacked = 0
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def hold(self, kinds: set[int]) -> None:
        with self._lock:
            self._held_kinds = frozenset(kinds)

    def release(self) -> None:
        with self._lock:
            self._held_kinds = frozenset()
            held, self._held = self._held, []
            for packet in held:
                self._deliver(packet)

    def _accept(self) -> None:
        client, _ = self._listener.accept()
        broker = socket.create_connection(("127.0.0.1", self._broker_port))
        self._to_client = client
        for source, sink, upstream in ((client, broker, True), (broker, client, False)):
            t = threading.Thread(target=self._pump, args=(source, sink, upstream), daemon=True)
            t.start()
            self._threads.append(t)

    def _pump(self, source: socket.socket, sink: socket.socket, upstream: bool) -> None:
        buffer = b""
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                with_shutdown(sink)
                return
            buffer += data
            while (split := _packet_end(buffer)) is not None:
                packet, buffer = buffer[:split], buffer[split:]
                kind = packet[0] >> 4
                with self._lock:
                    if upstream:
                        self.publishes += kind == 3
                        self.most_unacked = max(self.most_unacked, self.publishes - self.acks)
                        sink.sendall(packet)
                    elif kind in self._held_kinds:
                        self._held.append(packet)
                    else:
                        self._deliver(packet)

    def _deliver(self, packet: bytes) -> None:
        assert self._to_client is not None
        self.acks += packet[0] >> 4 == 4
        self._to_client.sendall(packet)

    def close(self) -> None:
        self._listener.close()


def with_shutdown(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _packet_end(buffer: bytes) -> int | None:
    """Length of the first complete MQTT packet in ``buffer`` (fixed header + remaining length), or None."""
    length, multiplier = 0, 1
    for i in range(1, min(len(buffer), 5)):
        byte = buffer[i]
        length += (byte & 0x7F) * multiplier
        multiplier *= 128
        if not byte & 0x80:
            end = i + 1 + length
            return end if len(buffer) >= end else None
    return None


@pytest.fixture
def mqtt_proxy() -> Iterator[Callable[[int], MqttProxy]]:
    """``mqtt_proxy(broker_port)`` -> an :class:`MqttProxy` listening on 127.0.0.1 (closed after the test)."""
    made: list[MqttProxy] = []

    def make(port: int) -> MqttProxy:
        made.append(MqttProxy(port))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


