"""The parts of `streetedge listen --share` that need no broker (the cluster test runs the rest)."""

from __future__ import annotations

import cbor2
import pytest

from tools.listen_share import SharedListener, routing_key, topic_of


def test_topic_filters_become_amq_topic_routing_keys() -> None:
    assert routing_key("streetedge/v1/+/+/compact") == "streetedge.v1.*.*.compact"
    assert routing_key("streetedge/v1/city/gw-1/data/+") == "streetedge.v1.city.gw-1.data.*"
    assert routing_key("streetedge/v1/#") == "streetedge.v1.#"
    assert topic_of("streetedge.v1.city.gw-1.birth") == "streetedge/v1/city/gw-1/birth"


def test_a_group_needs_a_name_and_a_broker() -> None:
    with pytest.raises(ValueError, match="at least one AMQP URL"):
        SharedListener([], "platform")
    with pytest.raises(ValueError, match="group name"):
        SharedListener(["amqp://guest:guest@127.0.0.1:5672/"], "bad.name")
    ok = SharedListener(["amqp://guest:guest@127.0.0.1:5672/"], "platform")
    assert ok.queue == "streetedge.share.platform"


def test_compact_messages_wait_for_a_birth_only_when_it_is_unknown() -> None:
    consumer = SharedListener(["amqp://guest:guest@127.0.0.1:5672/"], "platform")
    message = cbor2.dumps([1, 0, 0, b"\x01\x02\x03\x04", 0, b""])
    topic = "streetedge/v1/city/gw-1/compact"
    assert consumer._missing_birth(topic, message) == ("streetedge/v1/city/gw-1", b"\x01\x02\x03\x04")
    consumer.listener.births[("streetedge/v1/city/gw-1", b"\x01\x02\x03\x04")] = {}
    assert consumer._missing_birth(topic, message) is None
    assert consumer._missing_birth("streetedge/v1/city/gw-1/data/lamp-1", message) is None
