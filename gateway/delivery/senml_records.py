"""The normaliser: decoded registers of one poll -> one SenML pack (RFC 8428) -> CBOR.

A pack names its node once, in the base name of its first record::

    [{"bn": "urn:dev:streetedge:district-7:lamp-1:", "bt": 1767225600.25,
      "n": "dim_level", "u": "%", "v": 40},
     {"n": "relay", "vb": True},
     {"n": "seq", "v": 1234},
     {"n": "power", "u": "W", "v": 41.5},
     ...]

Names, units and scales come from the role's register map; nothing is restated
here. What the outbox keeps of a poll is smaller than its pack: the raw values
in schema order (:func:`encode_poll`); the pack, or a compact message, is made
from them when the record is sent. The node's ``seq`` register travels as an ordinary record: ``(node,
seq)`` is what lets anyone upstream drop the duplicates that at-least-once
delivery brings.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import cbor2

from gateway.contracts import BOOL, Number, Register, senml
from gateway.errors import GatewayError

URN_PREFIX = "urn:dev:streetedge:"
"""Base names are ``urn:dev:streetedge:<site>:<node id>:`` (RFC 8428 section 4.5.1)."""


def base_name(site: str, node_id: str) -> str:
    """SenML base name of a node: record names are appended to it."""
    return f"{URN_PREFIX}{site}:{node_id}:"


def build_pack(
    site: str, node_id: str, time: float, readings: Iterable[tuple[Register, Number]]
) -> list[dict[str, Any]]:
    """One SenML pack (text labels) for one poll of a node.

    Args:
        site: site id.
        node_id: node id.
        time: poll time, seconds since the epoch; becomes the base time.
        readings: ``(register, raw value)`` pairs as ``RegisterMap.decode`` gives them.
    """
    pack: list[dict[str, Any]] = []
    for reg, raw in readings:
        record: dict[str, Any] = {"n": reg.name}
        if reg.unit is not None:
            record["u"] = reg.unit
        if reg.type == BOOL:
            record["vb"] = bool(raw)
        else:
            record["v"] = reg.value(raw)
        pack.append(record)
    if pack:
        pack[0] = {"bn": base_name(site, node_id), "bt": time, **pack[0]}
    return pack


def encode_pack(pack: list[dict[str, Any]]) -> bytes:
    """SenML-CBOR (RFC 8428 section 6) of a pack; preferred (shortest) encodings."""
    return cbor2.dumps(senml.to_labels(pack), canonical=True)


# -- the poll record: what the outbox keeps of one poll --------------------------------------------------------


class PollRecord(NamedTuple):
    """One poll as the outbox keeps it: which schema, when (epoch ms), the raw values in schema order."""

    schema: bytes
    time_ms: int
    raws: list[Number]


def encode_poll(schema: bytes, time_ms: int, raws: Sequence[Number]) -> bytes:
    """The outbox payload of a poll: CBOR ``[schema id, epoch ms, [raw, ...]]`` (~40-60 bytes for a lamp).

    Raw values, not a SenML pack: the profile is chosen when the record is sent, and a compact message
    needs exactly these integers.
    """
    return cbor2.dumps([schema, time_ms, list(raws)])


class PollRecordError(GatewayError, ValueError):
    """An outbox payload that is not a poll record (:func:`encode_poll`); ``payload`` is what was read."""

    def __init__(self, problem: str, payload: bytes) -> None:
        super().__init__(f"not a poll record: {problem}")
        self.payload = payload


def decode_poll(payload: bytes) -> PollRecord:
    """Read an outbox payload written by :func:`encode_poll`; :class:`PollRecordError` if it is not one."""
    try:
        schema, time_ms, raws = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types for broken input
        raise PollRecordError(str(exc), payload) from exc
    if not (isinstance(schema, bytes) and isinstance(time_ms, int) and isinstance(raws, list)):
        raise PollRecordError("expected [bytes, int, list]", payload)
    return PollRecord(schema, time_ms, raws)


def poll_raws(registers: Sequence[Register], readings: Iterable[tuple[Register, Number]]) -> list[Number]:
    """Raw values of a poll in the order of ``registers`` (a schema's order); KeyError names a missing one."""
    by_name = {reg.name: raw for reg, raw in readings}
    return [by_name[reg.name] for reg in registers]


def poll_seq(registers: Sequence[Register], raws: Sequence[Number], time_ms: int) -> int:
    """The (node, seq) identity of a poll: the node's ``seq`` register, or the poll time (ms) if it has none."""
    for reg, raw in zip(registers, raws, strict=True):
        if reg.name == "seq":
            return int(raw)
    return time_ms
