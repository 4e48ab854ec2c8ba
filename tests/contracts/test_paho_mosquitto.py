"""What gateway/mqtt/connection.py relies on from paho-mqtt (public API only) and from the broker (Mosquitto).

One test per behaviour; each would fail if the dependency stopped doing it.
"""

from __future__ import annotations

import ast
import inspect
import queue
import socket
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt import connection
from gateway.mqtt.user_properties import UserProperties
from tools.broker import LocalBroker

ALLOWED = "allowed/"  # ACL_ALLOWED of tests/conftest.py: the acl_broker lets anonymous clients publish only here
NOT_AUTHORIZED = 0x87
NO_MATCHING_SUBSCRIBERS = 0x10
PUBACK, PINGRESP = 4, 13


class Observer:
    """An independent paho client in its own thread (loop_start) that records what arrives on ``topic``."""

    def __init__(self, broker: LocalBroker, topic: str) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        acks: queue.Queue[bool] = queue.Queue()
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_a: acks.put(True)
        self.client.on_publish = lambda *_a: acks.put(True)
        self._acks = acks
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        acks.get(timeout=30)

    def publish(self, topic: str, payload: bytes) -> None:
        """Publish QoS 1 and wait for the PUBACK."""
        self.client.publish(topic, payload, qos=1)
        self._acks.get(timeout=30)

    def next(self) -> paho.MQTTMessage:
        return self.messages.get(timeout=30)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def observer() -> Iterator[type[Observer]]:
    made: list[Observer] = []

    class Tracked(Observer):
        def __init__(self, broker: LocalBroker, topic: str) -> None:
            super().__init__(broker, topic)
            made.append(self)

    yield Tracked
    for o in made:
        o.close()


def test_connect_writes_connect_itself_and_the_connack_arrives_through_loop_read(mosquitto, driven) -> None:
    """With no write callback set, connect() sends CONNECT before it returns (the gateway calls it in a worker
    thread and only then hands the socket to the event loop); loop_read() then delivers CONNACK to on_connect."""
    d = driven()
    d.client.connect(mosquitto.host, mosquitto.port, keepalive=30)
    assert d.client.socket() is not None
    assert not d.client.want_write()  # CONNECT is out: nothing left for the event loop to write
    d.run_until(lambda: d.connack is not None)
    assert d.connack is not None and not d.connack[1].is_failure


def test_acl_denied_qos1_publish_reports_a_failure_reason_code_to_on_publish(acl_broker, driven) -> None:
    """MQTT 5: Mosquitto answers a publish its ACL denies with PUBACK 0x87, and paho's on_publish gets it.

    This is how the uplink knows that a refused pack must stay in the outbox.
    """
    d = driven()
    d.connect(acl_broker.host, acl_broker.port)
    accepted = d.publish(ALLOWED + "data", b"ok")
    refused = d.publish("elsewhere/data", b"no")
    # Success codes are not all 0: with nobody subscribed Mosquitto says 0x10, "No matching subscribers".
    assert not accepted.is_failure and accepted.value == NO_MATCHING_SUBSCRIBERS
    assert refused.is_failure and refused.value == NOT_AUTHORIZED
    assert "authori" in str(refused).lower()  # the text the uplink logs


def test_mqtt311_cannot_refuse_a_publish(acl_broker, driven, observer) -> None:
    """MQTT 3.1.1 has no reason code on PUBACK: a denied publish is acknowledged and silently dropped.

    The uplink's documentation states this limit; the test keeps it honest.
    """
    watch = observer(acl_broker, "#")
    d = driven(protocol=paho.MQTTv311)
    d.connect(acl_broker.host, acl_broker.port)
    assert not d.publish("elsewhere/data", b"dropped").is_failure
    watch.publish(ALLOWED + "marker", b"after")
    assert watch.next().topic == ALLOWED + "marker"  # the denied publish never reached anyone


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
def test_a_connection_dropped_without_disconnect_makes_the_broker_publish_the_will(
    protocol, mosquitto, driven, observer
) -> None:
    """Shutting down paho's socket (``socket()`` is public) ends the connection without DISCONNECT: the broker
    publishes the Will, and paho notices on its next read (on_socket_close, then on_disconnect)."""
    watch = observer(mosquitto, ALLOWED + "state")
    d = driven(protocol=protocol, client_id="will-dropped")
    d.client.will_set(ALLOWED + "state", b"offline", qos=1, retain=True)
    d.connect(mosquitto.host, mosquitto.port)
    sock = d.client.socket()
    assert sock is not None
    sock.shutdown(2)  # SHUT_RDWR
    d.client.loop_read()
    assert d.socket_closed
    assert d.client.socket() is None
    assert d.disconnected is not None and d.disconnected.is_failure
    will = watch.next()
    assert (will.topic, will.payload) == (ALLOWED + "state", b"offline")


def test_disconnect_suppresses_the_will_and_paho_closes_once_it_is_written(mosquitto, driven, observer) -> None:
    """DISCONNECT (a graceful stop) discards the Will; paho closes the socket itself after writing it."""
    watch = observer(mosquitto, ALLOWED + "state")
    d = driven(client_id="will-suppressed")
    d.client.will_set(ALLOWED + "state", b"offline", qos=1, retain=True)
    d.connect(mosquitto.host, mosquitto.port)
    assert d.client.disconnect() == paho.MQTT_ERR_SUCCESS
    d.run_until(lambda: d.client.socket() is None or d.socket_closed)
    assert d.socket_closed
    assert d.disconnected is not None and not d.disconnected.is_failure
    # A Will would reach the observer before anything published after the disconnect.
    watch.publish(ALLOWED + "state", b"marker")
    assert watch.next().payload == b"marker"


def test_user_properties_arrive_as_sent(mosquitto, driven, observer) -> None:
    """paho sends the bytes a Properties object's pack() returns: the gateway's pre-packed UserProperties
    reach an independent subscriber exactly as paho's own Properties do, order and UTF-8 kept."""
    pairs = (("seq", "41"), ("session", "7"), ("historical", ""), ("nœud", "lampe-é"))
    reference = Properties(PacketTypes.PUBLISH)
    reference.UserProperty = list(pairs)
    watch = observer(mosquitto, ALLOWED + "#")
    d = driven()
    d.connect(mosquitto.host, mosquitto.port)
    assert not d.publish(ALLOWED + "ours", b"1", properties=UserProperties(pairs)).is_failure
    assert not d.publish(ALLOWED + "paho", b"2", properties=reference).is_failure
    got = {m.topic: m.properties.UserProperty for m in (watch.next(), watch.next())}
    assert got[ALLOWED + "ours"] == list(pairs)
    assert got[ALLOWED + "paho"] == list(pairs)


def test_clean_start_discards_the_session_and_connack_says_so(mosquitto, driven) -> None:
    """Every uplink connection starts clean: the broker keeps nothing of a previous one (no stale
    subscription, no message redelivered behind the outbox), and CONNACK's session_present is False."""
    expiry = Properties(PacketTypes.CONNECT)
    expiry.SessionExpiryInterval = 300
    first = driven(client_id="session-check")
    first.connect(mosquitto.host, mosquitto.port, clean_start=True, properties=expiry)
    assert first.subscribe(ALLOWED + "cmd")[0].value == 1  # granted QoS 1
    first.client.disconnect()
    first.run_until(lambda: first.socket_closed)

    resumed = driven(client_id="session-check")
    resumed.connect(mosquitto.host, mosquitto.port, clean_start=False, properties=expiry)
    assert resumed.connack is not None and resumed.connack[0].session_present  # the check can see a session
    resumed.client.disconnect()
    resumed.run_until(lambda: resumed.socket_closed)

    clean = driven(client_id="session-check")
    clean.connect(mosquitto.host, mosquitto.port, clean_start=True)
    assert clean.connack is not None and not clean.connack[0].session_present
    clean311 = driven(client_id="session-check-311", protocol=paho.MQTTv311)
    clean311.connect(mosquitto.host, mosquitto.port)
    assert clean311.connack is not None and not clean311.connack[0].session_present


def test_retained_state_reaches_a_later_subscriber_and_the_last_one_wins(mosquitto, driven) -> None:
    """The gateway's state and births are retained: a consumer that connects later gets the latest."""
    d = driven()
    d.connect(mosquitto.host, mosquitto.port)
    d.publish(ALLOWED + "state", b"online-1", retain=True)
    d.publish(ALLOWED + "state", b"online-2", retain=True)
    late = driven()
    late.connect(mosquitto.host, mosquitto.port)
    late.subscribe(ALLOWED + "state")
    late.run_until(lambda: bool(late.messages))
    assert (late.messages[0].payload, late.messages[0].retain) == (b"online-2", True)


def test_max_inflight_bounds_the_publishes_awaiting_puback(mosquitto, driven, mqtt_proxy) -> None:
    """With max_inflight_messages_set(n), paho puts at most n QoS 1 publishes on the wire before their
    PUBACKs; the rest wait inside paho and go out as acknowledgements come back, every one reported."""
    proxy = mqtt_proxy(mosquitto.port)
    d = driven()
    d.client.max_inflight_messages_set(3)
    d.connect("127.0.0.1", proxy.port)
    proxy.hold({PUBACK})
    mids = [d.client.publish(ALLOWED + "window", b"%d" % i, qos=1).mid for i in range(10)]
    d.run_until(lambda: not d.client.want_write())
    # A SUBACK comes back through the proxy after everything written before the SUBSCRIBE went through it.
    d.subscribe(ALLOWED + "barrier")
    assert proxy.publishes == 3
    assert not d.published
    proxy.release()
    d.run_until(lambda: len(d.published) == 10)
    assert sorted(d.published) == sorted(mids)
    assert proxy.publishes == 10
    assert proxy.most_unacked == 3


def test_loop_misc_gives_up_on_a_broker_that_stops_answering(mosquitto, driven, mqtt_proxy) -> None:
    """Keepalive is loop_misc()'s: with PINGRESPs not coming back, it closes the socket and calls
    on_disconnect, which is how the uplink notices a half-open connection."""
    proxy = mqtt_proxy(mosquitto.port)
    d = driven()
    d.connect("127.0.0.1", proxy.port, keepalive=1)
    proxy.hold({PINGRESP})
    d.run_until(lambda: d.client.socket() is None, within=60)
    assert d.socket_closed
    assert d.disconnected is not None and d.disconnected.is_failure


def test_a_socket_shut_down_under_paho_ends_in_its_disconnect_callback_once(mosquitto, driven) -> None:
    """How the uplink drops the socket of a cancelled connect (``_drop_unattached``): shut the socket down,
    one ``loop_read()``; paho sees the end, closes its socket and calls the disconnect callback (which the
    uplink then ignores for that connection)."""
    d = driven()
    d.connect("127.0.0.1", mosquitto.port)
    sock = d.client.socket()
    sock.shutdown(socket.SHUT_RDWR)
    d.client.loop_read()
    assert d.client.socket() is None and d.socket_closed
    assert d.disconnected is not None and d.disconnected.is_failure


def test_every_attribute_the_uplink_sets_on_paho_is_a_public_property() -> None:
    """gateway/mqtt/connection.py sets paho's callbacks through its documented ``on_*`` properties only.

    Every ``self.paho.<name> = ...`` in that module is found by parsing it, and each name must be a public
    property of ``paho.Client`` that reads back what was set: a private attribute, or a property a new paho
    drops, fails here rather than silently in the uplink.
    """
    source = Path(connection.__file__).read_text()
    names = {
        target.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Attribute) and ast.unparse(target.value) == "self.paho"
    }
    assert {"on_connect", "on_disconnect", "on_publish", "on_message"} <= names  # the parse found them
    client = paho.Client(CallbackAPIVersion.VERSION2)
    for name in sorted(names):
        assert not name.startswith("_"), name
        assert isinstance(inspect.getattr_static(paho.Client, name), property), f"paho.Client.{name}"

        def callback(*_args: object) -> None:
            return None

        setattr(client, name, callback)
        assert getattr(client, name) is callback, name
