"""docs/vectors/compact.json: the encoder's own output, and decodable from docs/upstream.md alone."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Any

import cbor2

from gateway.delivery import compact
from protocols import senml
from tools.compact_vectors import OUT, vectors

DOC = Path(__file__).resolve().parents[2] / "docs" / "upstream.md"


def _file() -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(OUT.read_text())["vectors"]
    return data


def test_the_file_is_what_the_encoder_writes_today() -> None:
    """Regenerate with `python -m tools.compact_vectors --write` when the format changes on purpose."""
    assert _file() == json.loads(json.dumps(vectors()["vectors"]))
    assert "(vectors/compact.json)" in DOC.read_text()


def test_each_vector_encodes_and_decodes_as_written() -> None:
    for v in _file():
        gb = cbor2.loads(bytes.fromhex(v["birth"]))
        rows = [compact.Row(n, t, raws) for n, t, raws in v["rows"]]
        message = compact.encode(rows, gb, seq=v["seq"], historical=v["historical"])
        assert message.hex() == v["message"], v["name"]
        packs = compact.to_senml(message, gb)
        assert [json.loads(senml.encode_json(p)) for p in packs] == v["senml"], v["name"]


class _Columns:
    """The varint columns of one group, read as docs/upstream.md describes them."""

    def __init__(self, data: bytes, count: int) -> None:
        self.data, self.count, self.pos = data, count, 0

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    def deltas(self, zigzag: bool) -> list[int]:
        out, previous = [], 0
        for _ in range(self.count):
            d = self.varint()
            if zigzag:
                d = d // 2 if d % 2 == 0 else -(d + 1) // 2
            previous += d
            out.append(previous)
        return out

    def floats(self) -> list[float]:
        bits, values = 0, []
        for _ in range(self.count):
            bits ^= self.varint()
            values.append(struct.unpack(">f", bits.to_bytes(4, "big"))[0])
        return values


def _docs_decoder(message: bytes, birth: dict[str, Any]) -> tuple[int, bool, list[list[Any]]]:
    """A decoder written from the byte layout in docs/upstream.md, sharing no code with gateway.delivery.compact."""
    version, seq, flags, birth_id, t0, body = cbor2.loads(message)
    assert version == 1 and birth_id == birth["birth"]
    if flags & 2:
        body = zlib.decompressobj(-15).decompress(body)
    rows: list[list[Any]] = []
    for count, data in cbor2.loads(body):
        columns = _Columns(data, count)
        nodes = columns.deltas(False)
        times = [t0 * 1000 + t for t in columns.deltas(True)]
        schema = birth["schemas"][birth["nodes"][nodes[0]][1]]
        fields = [columns.floats() if kind == "f32" else columns.deltas(True) for *_, kind in schema[1]]
        assert columns.pos == len(data)
        rows += [[nodes[i], times[i], [f[i] for f in fields]] for i in range(count)]
    return seq, bool(flags & 1), rows


def test_the_documented_layout_is_enough_to_decode_every_vector() -> None:
    for v in _file():
        seq, historical, rows = _docs_decoder(bytes.fromhex(v["message"]), cbor2.loads(bytes.fromhex(v["birth"])))
        assert (seq, historical) == (v["seq"], v["historical"])
        assert sorted(rows) == sorted(v["rows"]), v["name"]
