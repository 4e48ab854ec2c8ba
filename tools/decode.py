"""``streetedge decode``: any message the gateway publishes (or receives), as JSON.

Data and events (a SenML-CBOR pack on ``<root>/data/<node>`` or
``<root>/event/<node>``) become resolved SenML records. A compact message
(``<root>/compact``) needs the gateway birth it names (the retained
``<root>/birth`` payload)::

    mosquitto_sub -N -C 1 -t streetedge/v1/SITE/GW/birth > birth.cbor      # -N: no newline added
    mosquitto_sub -N -C 1 -t streetedge/v1/SITE/GW/compact > compact.cbor
    streetedge decode compact.cbor --birth birth.cbor

Every other message is a CBOR map (gateway and node births, gateway and node
states, delivery counters, command results, audit entries) and is printed as a
JSON object with its ``kind`` first and byte strings in hex; a signed command
(COSE_Sign1 on ``<root>/cmd``) shows its key id and command map, *not verified*.
"""

from __future__ import annotations

from typing import Any

import cbor2

from gateway.commands import cose
from gateway.delivery import compact
from protocols import senml

MAP_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("gateway_birth", frozenset({"birth", "nodes"})),
    ("audit", frozenset({"seq", "event", "prev", "hash"})),
    ("result", frozenset({"id", "status"})),
    ("delivery", frozenset({"stored", "dropped", "depth"})),
    ("command", frozenset({"id", "action", "target"})),
    ("node_birth", frozenset({"node", "schema"})),
    ("gateway_state", frozenset({"online", "session"})),
    ("node_state", frozenset({"online"})),
)
"""A CBOR map's kind, by the keys only that kind carries (the first match wins)."""

TOPIC_KINDS = {"state": "gateway_state", "birth": "gateway_birth", "delivery": "delivery", "result": "result",
               "audit": "audit", "cmd": "command", "compact": "compact"}
"""Kind of a message by the last part of its topic (``<root>/<part>``)."""


class DecodeError(ValueError):
    """A payload that is not a message of the gateway; the message says what it is instead."""


def is_compact(item: object) -> bool:
    """Whether a decoded CBOR item has the shape of a compact message (``[1, seq, flags, birth, t0, body]``)."""
    return (
        isinstance(item, list) and len(item) == 6 and item[0] == compact.VERSION
        and isinstance(item[3], bytes) and isinstance(item[5], bytes)
    )


def resolve_payload(data: bytes, birth: bytes | None = None) -> list[dict[str, Any]]:
    """Resolved SenML records (full names, absolute times) of a data payload.

    Raises ValueError (``CompactError``, ``DecodeError``) for a payload that is neither profile, or a
    compact message without, or with the wrong, gateway birth.
    """
    item = _loads(data)
    if is_compact(item):
        if birth is None:
            raise DecodeError("a compact message needs its gateway birth (--birth FILE)")
        packs = compact.to_senml(data, _loads(birth))
    else:
        packs = [senml.from_labels(item)]
    return [record for pack in packs for record in senml.resolve(pack)]


def decode_message(data: bytes, *, birth: bytes | None = None, topic: str | None = None) -> Any:
    """Any gateway message as JSON-ready data: records for data and events, a ``kind``-first map otherwise.

    ``topic`` (optional) names the kind when the shape alone does not; ValueError (DecodeError and the
    codecs' errors) for a payload that is none of them.
    """
    try:
        return _decode_message(data, birth=birth, topic=topic)
    except cbor2.CBORError as exc:  # cbor2's errors are no ValueError: a broken item inside a message
        raise DecodeError(f"broken CBOR inside the message: {exc}") from None


def _decode_message(data: bytes, *, birth: bytes | None, topic: str | None) -> Any:
    item = _loads(data)
    if isinstance(item, cbor2.CBORTag) and item.tag == cose.SIGN1_TAG:
        return _command(data)
    if is_compact(item) or isinstance(item, list):
        return resolve_payload(data, birth)
    if not isinstance(item, dict):
        raise DecodeError(f"not a message of the gateway: a CBOR {type(item).__name__}, not a map or a pack")
    kind = kind_of(item, topic)
    return {"kind": kind, **_plain(item)}


def kind_of(item: dict[Any, Any], topic: str | None = None) -> str:
    """The kind of a CBOR map message: by its topic when given and known, else by its keys."""
    if topic:
        parts = topic.split("/")
        if len(parts) >= 6 and parts[-1] == "state" and parts[-3] == "node":
            return "node_state"
        if len(parts) >= 6 and parts[-2] == "birth":
            return "node_birth"
        if parts[-1] in TOPIC_KINDS and len(parts) == 5:
            return TOPIC_KINDS[parts[-1]]
    keys = set(item)
    for kind, needed in MAP_KINDS:
        if needed <= keys:
            return kind
    return "unknown"


def _command(data: bytes) -> dict[str, Any]:
    message = cose.decode_sign1(data)
    try:
        command = cbor2.loads(message.payload)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise DecodeError(f"a COSE_Sign1 whose payload is not CBOR: {exc}") from None
    return {
        "kind": "signed_command", "verified": False,
        "kid": message.kid.decode(errors="replace") if message.kid else None,
        "alg": cose.ALG_NAMES.get(message.alg or 0, message.alg), "command": _plain(command),
        "signature": message.proof.hex(),
    }


def _loads(data: bytes) -> Any:
    if not data:
        raise DecodeError("empty payload")
    try:
        return cbor2.loads(data)
    except (cbor2.CBORDecodeError, ValueError) as exc:
        raise DecodeError(f"not CBOR: {exc}") from None


def _plain(value: Any) -> Any:
    """``value`` with byte strings in hex and map keys as text, so that JSON can carry it."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k.hex() if isinstance(k, bytes) else str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, cbor2.CBORTag):
        return {"tag": value.tag, "value": _plain(value.value)}
    return value
