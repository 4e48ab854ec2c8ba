"""MQTT 5 user properties packed once per message (paho's generic ``Properties`` re-encodes them per publish).

Data messages of the SenML profile carry ``seq``, ``session`` and, for replayed
backlog, ``historical`` as user properties. paho's ``Properties`` validates
every property by name and packs it again when the publish is sent: with one
message per poll that cost about 40 µs a message, a tenth of the uplink's CPU.
:class:`UserProperties` packs them once, byte for byte as paho would (the tests
compare both), and is accepted wherever paho takes ``Properties``.
"""

from __future__ import annotations

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties, VariableByteIntegers

__all__ = ["UserProperties"]

_PUBLISH_PROPERTIES = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
_USER_PROPERTY = b"\x26"  # identifier 38


def _utf8(text: str) -> bytes:
    data = text.encode()
    return len(data).to_bytes(2, "big") + data


class UserProperties(Properties):
    """MQTT 5 user properties of one PUBLISH, packed once, as paho's ``Properties`` would pack them.

    Args:
        pairs: ``(name, value)`` user properties, in the order they are sent.
    """

    def __init__(self, pairs: tuple[tuple[str, str], ...]) -> None:  # paho's __init__ skipped on purpose
        fields = self.__dict__  # paho's __setattr__ would validate each name again
        fields["packetType"] = PacketTypes.PUBLISH
        fields["types"] = _PUBLISH_PROPERTIES.types
        fields["names"] = _PUBLISH_PROPERTIES.names
        fields["properties"] = _PUBLISH_PROPERTIES.properties
        fields["UserProperty"] = list(pairs)
        body = b"".join(_USER_PROPERTY + _utf8(k) + _utf8(v) for k, v in pairs)
        fields["_packed"] = VariableByteIntegers.encode(len(body)) + body  # type: ignore[no-untyped-call]

    def pack(self) -> bytes:
        """The packed properties (length prefix included)."""
        packed: bytes = self.__dict__["_packed"]
        return packed
