"""User properties packed once: the same bytes as paho's generic Properties, the same attribute."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt.user_properties import UserProperties


@pytest.mark.parametrize("pairs", [
    (("seq", "0"), ("session", "1")),
    (("seq", "255"), ("session", "123456"), ("historical", "1")),
    (("ünïcödé", "värde"), ("", ""), ("long", "x" * 300)),
])
def test_packs_exactly_as_paho_does(pairs: tuple[tuple[str, str], ...]) -> None:
    generic = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    generic.UserProperty = list(pairs)
    fast = UserProperties(pairs)
    assert fast.pack() == generic.pack()
    assert fast.UserProperty == list(pairs)
    assert fast.packetType == PacketTypes.PUBLISH


def test_reads_back_through_paho() -> None:
    """What paho's receiving side unpacks from the bytes is the pairs, in order."""
    pairs = (("seq", "7"), ("session", "3"), ("historical", "1"))
    back = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    back.unpack(UserProperties(pairs).pack())
    assert back.UserProperty == list(pairs)
