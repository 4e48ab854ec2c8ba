"""A flag as the gateway publishes it reads in ``streetedge decode`` and ``streetedge watch``."""

from __future__ import annotations

from gateway.analytics import FLAG_SEQ_BASE, Flag
from gateway.delivery.messages import Messages, known_roles
from gateway.delivery.outbox import Entry, Kind
from gateway.mqtt.topics import Topics
from gateway.polling.event_catchup import Event
from tools.decode import decode_message
from tools.watch import Street

T = 1_772_500_000.0
FLAG = Flag("meter-2", "water.night_flow", T, 0.0, 2.0, ((T - 86400, 2.0), (T, 2.0)),
            "water passed in every 30-min interval of 02:00-04:00 for 2 nights")


def published() -> tuple[str, bytes]:
    """The event message of one node event and one flag, as the gateway builds it."""
    messages = Messages(Topics("s", "g"), "s", "g", known_roles())
    messages.nodes([("meter-2", "meter")])
    entries = [
        Entry(1, "meter-2", 41, Kind.EVENT, T - 10, Event(41, T - 10, 1, 1).payload(), 0, False),
        Entry(2, "meter-2", FLAG_SEQ_BASE, Kind.EVENT, T, FLAG.payload(), 0, False),
    ]
    [msg] = messages.events(entries, historical=False)
    return msg.topic, msg.payload


def test_decode_shows_the_flag_with_its_evidence() -> None:
    topic, payload = published()
    assert topic == "streetedge/v1/s/g/event/meter-2"
    records = decode_message(payload, topic=topic)
    named = [(r["n"].rsplit(":", 1)[-1], r.get("v", r.get("vs"))) for r in records]
    assert ("flag", "water.night_flow") in named
    assert ("flag_seq", FLAG_SEQ_BASE) in named
    assert ("flag_observed", 2.0) in named
    assert [v for n, v in named if n == "flag_evidence"] == [2.0, 2.0]
    assert ("event_seq", 41) in named  # the node's own event beside it, unchanged


def test_watch_lists_the_flag_among_the_alarms() -> None:
    street = Street(Topics("s", "g"))
    topic, payload = published()
    assert street.feed(topic, payload) == "event meter-2: 2 event(s)"
    assert street.alarms[-1].endswith("meter-2 flag water.night_flow: " + FLAG.detail)
