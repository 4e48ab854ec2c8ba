"""Test vectors of the compact profile, for consumers who decode it in another language.

``python -m tools.compact_vectors --write`` (re)writes ``docs/vectors/compact.json``;
``tests/docs/test_compact_vectors.py`` checks that file against the encoder and
against a decoder written from ``docs/upstream.md`` alone. Each vector holds the
gateway birth (hex), the rows encoded (node index, epoch milliseconds, raw
values in schema order), the message (hex) and the SenML-JSON packs it decodes
into. The values are drawn from a fixed seed within each register's range.
"""

from __future__ import annotations

import argparse
import json
import random
import struct
from pathlib import Path
from typing import Any

import cbor2

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.delivery import birth, compact
from protocols import senml

OUT = Path(__file__).resolve().parents[1] / "docs" / "vectors" / "compact.json"
T0_MS = 1_798_761_600_250


def _raw(reg: Any, rng: random.Random) -> int | float:
    if birth.TYPE_NAMES[reg.type] == "f32":
        return float(struct.unpack(">f", struct.pack(">f", rng.uniform(-1000.0, 1000.0)))[0])
    return rng.randint(int(reg.minimum), int(reg.maximum))


def _vector(name: str, roles: list[str], polls: int, *, seed: int, seq: int, historical: bool = False,
            step_ms: int = 60_000) -> dict[str, Any]:
    rng = random.Random(seed)
    nodes = [(f"{role}-{i + 1}", birth.schema_of(load_role(role))) for i, role in enumerate(roles)]
    body = birth.gateway_birth(site="district-7", gateway="cabinet-12", session=7, ts=T0_MS / 1000,
                               profile="compact", nodes=nodes)
    encoded_birth = birth.encode(body)
    decoded_birth = cbor2.loads(encoded_birth)
    regs = {role: [r for table in (HOLDING, INPUT) for r in load_role(role).registers if r.table == table]
            for role in roles}
    rows: list[tuple[int, int, list[int | float]]] = []
    for k in range(polls):
        for index, role in enumerate(roles):
            # small changes between polls, as on a street: most values repeat
            previous = rows[-len(roles)][2] if k else None
            raws = [_raw(r, rng) if previous is None or rng.random() < 0.2 else previous[i]
                    for i, r in enumerate(regs[role])]
            rows.append((index, T0_MS + k * step_ms + index * 250, raws))
    message = compact.encode([compact.Row(*row) for row in rows], decoded_birth, seq=seq, historical=historical)
    packs = compact.to_senml(message, decoded_birth)
    return {
        "name": name,
        "birth": encoded_birth.hex(),
        "seq": seq,
        "historical": historical,
        "rows": [[n, t, raws] for n, t, raws in rows],
        "message": message.hex(),
        "senml": [json.loads(senml.encode_json(pack)) for pack in packs],
    }


def vectors() -> dict[str, Any]:
    """Every vector, built by the encoder from fixed seeds."""
    return {
        "about": "Compact profile test vectors; see docs/upstream.md (Data: the compact profile).",
        "vectors": [
            _vector("one lamp, one poll", ["lamp"], 1, seed=1, seq=1),
            _vector("two lamps, two polls a minute apart", ["lamp", "lamp"], 2, seed=2, seq=2),
            _vector("three roles in one message (three groups)", ["lamp", "meter", "env"], 2, seed=3, seq=3),
            _vector("replayed backlog (historical flag)", ["meter"], 3, seed=4, seq=4, historical=True),
            _vector("12 lamps, 2 polls: a DEFLATE-compressed body", ["lamp"] * 12, 2, seed=5, seq=255),
        ],
    }


def main(argv: list[str] | None = None) -> int:
    """Print the vectors, or write them to docs/vectors/compact.json with --write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"write {OUT.relative_to(OUT.parents[2])}")
    args = parser.parse_args(argv)
    data = vectors()
    # one vector per line: a diff shows which vector changed, and the file stays small
    lines = [json.dumps(v, separators=(",", ":")) for v in data["vectors"]]
    text = '{"about": ' + json.dumps(data["about"]) + ',\n"vectors": [\n' + ",\n".join(lines) + "\n]}\n"
    if args.write:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
