"""``streetedge decode``: any data payload of the gateway, either profile, as resolved SenML records.

A SenML-CBOR pack (``<root>/data/<node>``) decodes on its own. A compact
message (``<root>/compact``) needs the gateway birth it names (the retained
``<root>/birth`` payload)::

    mosquitto_sub -N -C 1 -t streetedge/v1/SITE/GW/birth > birth.cbor      # -N: no newline added
    mosquitto_sub -N -C 1 -t streetedge/v1/SITE/GW/compact > compact.cbor
    streetedge decode compact.cbor --birth birth.cbor
"""

from __future__ import annotations

from typing import Any

import cbor2

from gateway.delivery import compact
from protocols import senml


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
    item = cbor2.loads(data)
    if is_compact(item):
        if birth is None:
            raise ValueError("a compact message needs its gateway birth (--birth FILE)")
        packs = compact.to_senml(data, cbor2.loads(birth))
    else:
        packs = [senml.from_labels(item)]
    return [record for pack in packs for record in senml.resolve(pack)]
