"""The compact data profile: many polls in one small message, decodable back into SenML.

After its birth (:mod:`gateway.delivery.birth`) the gateway sends readings as the raw
scaled integers of the register map, in schema order, batched over an interval
and laid out in columns so that deltas are small and DEFLATE finds repeats. A
consumer turns any compact message back into SenML packs with :func:`to_senml`
and the gateway birth it names; this module needs only ``cbor2`` and the
standard library, so a consumer may copy it as it is.

Message: a CBOR array ``[1, seq, flags, birth, t0, body]``

- ``seq``: the message's sequence number in its session (0..255, wrapping);
- ``flags``: bit 0 set if the rows are replayed backlog (historical), bit 1 set
  if ``body`` is DEFLATE-compressed (raw RFC 1951, no zlib header);
- ``birth``: the 4-byte id of the gateway birth whose node table and schemas
  the rows refer to;
- ``t0``: epoch seconds (integer); row times are milliseconds after ``t0``;
- ``body``: a byte string holding the CBOR array of groups.

Group: ``[rows, columns]``. The rows of a group are polls of nodes that share
one schema, sorted by node index, then time. ``columns`` is one byte string of
unsigned LEB128 varints, column after column, ``rows`` values each:

1. node: index in the birth's node table, as the difference to the previous row's;
2. time: milliseconds after ``t0``, zigzag-encoded difference to the previous row's;
3. one column per schema field: integer types (u16, s16, u32, s32, bool) as the
   zigzag-encoded difference of the raw value to the previous row's (0 before
   the first row); f32 as the IEEE 754 single bits XOR the previous row's.

Raw values are the register map's: a value is ``raw * 10**scale`` in the
field's unit, exactly as the SenML profile publishes it, so nothing the map
defines is lost. Times are kept to the millisecond.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import cbor2

from gateway.errors import GatewayError

__all__ = ["VERSION", "CompactError", "Message", "Row", "decode", "encode", "pack", "to_senml"]

VERSION = 1
HISTORICAL = 1
"""Flag bit: the rows are replayed backlog, not live data."""
DEFLATED = 2
"""Flag bit: the body is raw DEFLATE."""
URN_PREFIX = "urn:dev:streetedge:"
_F32 = "f32"
_BOOL = "bool"
_DEFLATE_MIN = 64  # bodies shorter than this never shrink under DEFLATE's own overhead


class CompactError(GatewayError, ValueError):
    """A compact message that cannot be read (malformed, or its birth is not the one given)."""


class Row(NamedTuple):
    """One poll: node index in the birth's table, epoch milliseconds, raw values in schema order."""

    node: int
    time_ms: int
    raws: Sequence[int | float]


class Message(NamedTuple):
    """A decoded compact message: rows as ``(node id, epoch ms, raw values)``."""

    seq: int
    historical: bool
    birth: bytes
    rows: list[tuple[str, int, list[int | float]]]


def encode(
    rows: Iterable[Row], birth: Mapping[str, Any], *, seq: int, historical: bool = False, deflate: bool = True
) -> bytes:
    """One compact message of ``rows`` for the gateway birth ``birth`` (the decoded birth map).

    DEFLATE is applied when it makes the body smaller (and ``deflate`` allows it).
    """
    table = birth["nodes"]
    schemas = birth["schemas"]
    groups: dict[bytes, list[Row]] = {}
    for row in rows:
        groups.setdefault(table[row.node][1], []).append(row)
    if not groups:
        raise ValueError("a compact message needs at least one row")
    t0 = min(r.time_ms for g in groups.values() for r in g) // 1000
    body_groups = []
    for sid, members in groups.items():
        members.sort(key=lambda r: (r.node, r.time_ms))
        types = [f[3] for f in schemas[sid][1]]
        out = bytearray()
        _column(out, [r.node for r in members], signed=False)
        _column(out, [r.time_ms - t0 * 1000 for r in members], signed=True)
        for i, kind in enumerate(types):
            if len(members[0].raws) != len(types):
                raise ValueError(f"node {table[members[0].node][0]}: {len(members[0].raws)} values, schema has "
                                 f"{len(types)}")
            if kind == _F32:
                _floats(out, [r.raws[i] for r in members])
            else:
                _column(out, [int(r.raws[i]) for r in members], signed=True)
        body_groups.append([len(members), bytes(out)])
    body = cbor2.dumps(body_groups)
    flags = HISTORICAL if historical else 0
    if deflate and len(body) >= _DEFLATE_MIN:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        packed = packer.compress(body) + packer.flush()
        if len(packed) < len(body):
            body, flags = packed, flags | DEFLATED
    return cbor2.dumps([VERSION, seq, flags, birth["birth"], t0, body])


def decode(payload: bytes, birth: Mapping[str, Any]) -> Message:
    """Read a compact message against its gateway birth; CompactError if it is malformed or the birth differs."""
    try:
        item = cbor2.loads(payload)
    except Exception as exc:  # cbor2 raises several types for broken input
        raise CompactError(f"not CBOR: {exc}") from exc
    if not (isinstance(item, list) and len(item) == 6 and item[0] == VERSION):
        raise CompactError("not a compact message (expected [1, seq, flags, birth, t0, body])")
    _, seq, flags, bid, t0, body = item
    if not (isinstance(seq, int) and isinstance(flags, int) and isinstance(t0, int) and isinstance(body, bytes)):
        raise CompactError("malformed compact header")
    if bid != birth.get("birth"):
        raise CompactError(f"message is for birth {_hex(bid)}, not {_hex(birth.get('birth'))}: request a rebirth")
    try:
        if flags & DEFLATED:
            body = zlib.decompress(body, -15)
        groups = cbor2.loads(body)
        rows = [row for group in groups for row in _read_group(group, birth, t0 * 1000)]
    except CompactError:
        raise
    except Exception as exc:
        raise CompactError(f"malformed compact body: {exc}") from exc
    return Message(seq, bool(flags & HISTORICAL), bid, rows)


def to_senml(payload: bytes, birth: Mapping[str, Any]) -> list[list[dict[str, Any]]]:
    """Turn a compact message into SenML packs (one per poll), as the SenML profile would publish them.

    Each pack: the first record carries ``bn`` = ``urn:dev:streetedge:<site>:<node>:`` and ``bt`` = poll
    time in seconds; every field becomes a record with its name, unit and value (``vb`` for booleans).
    """
    message = decode(payload, birth)
    schemas = birth["schemas"]
    index = {node_id: sid for node_id, sid in birth["nodes"]}
    return [pack(birth["site"], node_id, time_ms, schemas[index[node_id]][1], raws)
            for node_id, time_ms, raws in message.rows]


def pack(
    site: str, node_id: str, time_ms: int, fields: Sequence[Sequence[Any]], raws: Sequence[int | float]
) -> list[dict[str, Any]]:
    """The SenML pack of one poll from its schema's fields (``[name, unit, scale, type]``) and raw values."""
    records: list[dict[str, Any]] = []
    for (name, unit, scale, kind), raw in zip(fields, raws, strict=True):
        record: dict[str, Any] = {"n": name}
        if unit is not None:
            record["u"] = unit
        if kind == _BOOL:
            record["vb"] = bool(raw)
        else:
            record["v"] = _value(raw, scale, kind)
        records.append(record)
    if records:
        records[0] = {"bn": f"{URN_PREFIX}{site}:{node_id}:", "bt": time_ms / 1000, **records[0]}
    return records


def _value(raw: int | float, scale: int, kind: str) -> int | float:
    """Engineering value of a raw value, computed as the register map computes it."""
    if scale == 0 or kind == _F32:
        return raw
    step: int = 10 ** abs(scale)
    return raw * step if scale > 0 else raw / step


def _read_group(group: Any, birth: Mapping[str, Any], base_ms: int) -> list[tuple[str, int, list[int | float]]]:
    count, data = group
    if not isinstance(count, int) or count < 1 or not isinstance(data, bytes):
        raise CompactError("malformed group")
    reader = _Reader(data)
    nodes = reader.column(count, signed=False, delta=True)
    table = birth["nodes"]
    if nodes[-1] >= len(table) or nodes[0] < 0:
        raise CompactError(f"node index {nodes[-1]} is not in the birth's table of {len(table)}")
    sid = table[nodes[0]][1]
    if any(table[n][1] != sid for n in nodes):
        raise CompactError("a group mixes schemas")
    times = reader.column(count, signed=True, delta=True)
    columns: list[list[int | float]] = []
    for field in birth["schemas"][sid][1]:
        if field[3] == _F32:
            columns.append(reader.floats(count))
        else:
            columns.append(list(reader.column(count, signed=True, delta=True)))
    if not reader.done():
        raise CompactError("trailing bytes in a group")
    pairs = enumerate(zip(nodes, times, strict=True))
    return [(table[n][0], base_ms + t, [col[i] for col in columns]) for i, (n, t) in pairs]


def _column(out: bytearray, values: Sequence[int], *, signed: bool) -> None:
    """Append ``values`` as varints of the difference to the previous value (zigzag if ``signed``)."""
    prev = 0
    for v in values:
        d = v - prev
        prev = v
        if signed:
            d = -2 * d - 1 if d < 0 else 2 * d  # zigzag: small magnitudes, either sign, stay short
        elif d < 0:
            raise ValueError("an unsigned column must not decrease")
        _varint(out, d)


def _floats(out: bytearray, values: Sequence[int | float]) -> None:
    """Append float32 values as varints of their bits XOR the previous value's bits."""
    prev = 0
    for v in values:
        (bits,) = struct.unpack(">I", struct.pack(">f", v))
        _varint(out, bits ^ prev)
        prev = bits


def _varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


class _Reader:
    """Reads varint columns from a byte string."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def varint(self) -> int:
        shift = n = 0
        while True:
            if self.pos >= len(self.data):
                raise CompactError("a column ends early")
            b = self.data[self.pos]
            self.pos += 1
            n |= (b & 0x7F) << shift
            if b < 0x80:
                return n
            shift += 7
            if shift > 70:
                raise CompactError("a varint is too long")

    def column(self, count: int, *, signed: bool, delta: bool) -> list[int]:
        values = []
        prev = 0
        for _ in range(count):
            d = self.varint()
            if signed:
                d = (d >> 1) ^ -(d & 1)
            prev = prev + d if delta else d
            values.append(prev)
        return values

    def floats(self, count: int) -> list[int | float]:
        values: list[int | float] = []
        prev = 0
        for _ in range(count):
            prev ^= self.varint()
            if prev > 0xFFFFFFFF:
                raise CompactError("an f32 value has more than 32 bits")
            values.append(struct.unpack(">f", struct.pack(">I", prev))[0])
        return values

    def done(self) -> bool:
        return self.pos == len(self.data)


def _hex(value: object) -> str:
    return value.hex() if isinstance(value, bytes) else repr(value)
