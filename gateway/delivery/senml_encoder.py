"""The hot path of the normaliser: one node's polls to SenML-CBOR, with the constant parts encoded once.

:func:`gateway.delivery.senml_records.build_pack` + :func:`gateway.delivery.senml_records.encode_pack` are the
definition of a data payload: build the records as maps, relabel them
(``protocols.senml``), encode canonically with cbor2. On a busy gateway that
costs about 4 µs per reading, most of it spent re-encoding what never changes
(names, units, the base name) and sorting map keys. A :class:`PackEncoder` has
cbor2 encode, once per register, its record with a placeholder where the value
goes and keeps the bytes before the placeholder (map head, ``n``, ``u``, the
value key); likewise the base fields once per node and the array head once per
length. A poll then costs one canonical cbor2 call per value and a join. Every
byte is cbor2's; the result is byte for byte what the definition gives (the
tests compare both on every role with random values); anything unusual (a
non-finite float) takes the definition's own path.
``python -m tools.bench.senml_encoder`` measures it against the definition.

Canonical order of the integer labels (RFC 8949 section 4.2.1, bytewise order
of the encoded keys): ``n`` (0), ``u`` (1), ``v`` (2), ``vb`` (4), ``bn`` (-2),
``bt`` (-3); so the value is the last field of every record but the first,
where the base fields follow it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import cbor2

from gateway.contracts import BOOL, Number, Register, senml
from gateway.delivery.senml_records import base_name, build_pack, encode_pack

_N, _U, _V, _VB, _BN, _BT = (senml.LABELS[k] for k in ("n", "u", "v", "vb", "bn", "bt"))
_PLACEHOLDER = cbor2.dumps(None)  # one byte (f6): where a value goes in a record encoded ahead of time
_BASE_TAIL = cbor2.dumps(_BN) + cbor2.dumps("") + cbor2.dumps(_BT) + _PLACEHOLDER  # bn "" and bt, as encoded
_TRUE, _FALSE = cbor2.dumps(True), cbor2.dumps(False)


def _before_value(record: dict[int, object], tail: bytes = b"") -> bytes:
    """The canonical encoding of ``record`` (value: the placeholder) up to the value, with ``tail`` cut off."""
    encoded = cbor2.dumps(record, canonical=True)
    cut = len(encoded) - len(tail) - len(_PLACEHOLDER)
    assert encoded[cut:] == _PLACEHOLDER + tail, "the value is not where canonical order puts it"
    return encoded[:cut]


_array_heads: dict[int, bytes] = {}


def _array_head(length: int) -> bytes:
    """The head of an array of ``length`` items, as cbor2 writes it (cached: packs come in few lengths)."""
    head = _array_heads.get(length)
    if head is None:
        head = _array_heads[length] = cbor2.dumps([None] * length)[: -length * len(_PLACEHOLDER)]
    return head


class PackEncoder:
    """SenML-CBOR payloads of one node.

    Args:
        site: site id.
        node_id: node id (the base name ``urn:dev:streetedge:<site>:<node id>:``).
    """

    # id(register) -> (first, other, is bool, the register): shared by every node's encoder, since a
    # register's prefixes do not depend on the node (250 lamps of 50 registers: 3 MB when kept per node).
    # The entry holds the register, so its id cannot be reused while the entry exists.
    _prefix: ClassVar[dict[int, tuple[bytes, bytes, bool, Register]]] = {}

    def __init__(self, site: str, node_id: str) -> None:
        self.site = site
        self.node_id = node_id
        self._base = cbor2.dumps(_BN) + cbor2.dumps(base_name(site, node_id)) + cbor2.dumps(_BT)

    @classmethod
    def _prefixes(cls, reg: Register) -> tuple[bytes, bytes, bool, Register]:
        is_bool = reg.type == BOOL
        record: dict[int, object] = {_N: reg.name}
        if reg.unit is not None:
            record[_U] = reg.unit
        record[_VB if is_bool else _V] = None
        other = _before_value(record)
        first = _before_value({**record, _BN: "", _BT: None}, _BASE_TAIL)
        entry = (first, other, is_bool, reg)
        cls._prefix[id(reg)] = entry
        return entry

    def encode(self, time: float, readings: Sequence[tuple[Register, Number]]) -> bytes:
        """The payload of one poll: ``encode_pack(build_pack(site, node, time, readings))``, faster."""
        if not readings:
            return encode_pack([])
        dumps = cbor2.dumps
        get = self._prefix.get
        isfinite = math.isfinite
        parts = [_array_head(len(readings))]
        append = parts.append
        for i, (reg, raw) in enumerate(readings):
            first, other, is_bool, _ = get(id(reg)) or self._prefixes(reg)
            if is_bool:
                value = _TRUE if raw else _FALSE
            else:
                number = reg.value(raw)
                if number.__class__ is float and not isfinite(number):
                    return encode_pack(build_pack(self.site, self.node_id, time, readings))
                value = dumps(number, canonical=True)
            if i:
                append(other)
                append(value)
            else:
                parts += (first, value, self._base, dumps(time, canonical=True))
        return b"".join(parts)
