"""The normaliser: decoded registers of one poll -> one SenML pack (RFC 8428) -> CBOR.

A pack names its node once, in the base name of its first record::

    [{"bn": "urn:dev:streetedge:district-7:lamp-1:", "bt": 1767225600.25,
      "n": "dim_level", "u": "%", "v": 40},
     {"n": "relay", "vb": True},
     {"n": "seq", "v": 1234},
     {"n": "power", "u": "W", "v": 41.5},
     ...]

Names, units and scales come from the role's register map; nothing is restated
here. The node's ``seq`` register travels as an ordinary record: ``(node,
seq)`` is what lets anyone upstream drop the duplicates that at-least-once
delivery brings.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cbor2

from gateway.contracts import BOOL, Number, Register
from protocols import senml

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
