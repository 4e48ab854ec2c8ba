"""Mutation fuzz of protocols.cbor: the decoder may accept or refuse, never crash or hang.

    python -m tools.fuzz.cbor --cases 100000 --seed 7

Inputs are random bytes and valid encodings (RFC 8949 Appendix A plus a few
built here) with bits flipped, bytes replaced, inserted or deleted, truncated
or spliced. "Refused" means DecodeError; any other exception is a crash. An
accepted input must re-encode to something that decodes to the same value.
Prints "N cases, K accepted, R refused, C crashes" and exits 1 on a crash.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path

from protocols import cbor
from protocols.errors import DecodeError

_VECTORS = Path(__file__).resolve().parents[2] / "tests/protocols/vectors/cbor_appendix_a.json"


def seeds() -> list[bytes]:
    """Valid encodings to mutate: Appendix A and a few larger items."""
    out = [bytes.fromhex(item["hex"]) for item in json.loads(_VECTORS.read_text())]
    out += [
        cbor.dumps([{"bn": "urn:dev:mac:0024befffe804ff1:", "bt": 1.7e9},
                    {0: "temp", 1: "Cel", 2: 21.5}]),
        cbor.dumps({"a": [1, -2, 2**70, -(2**70)], b"b": [1.5, 1.1, 100000.0, None, True]}),
        cbor.dumps([cbor.Tag(1000, [cbor.UNDEFINED, cbor.Simple(99)]), "héllo €", b"\0" * 30]),
        bytes.fromhex("9fbf61615f4100420102ff61627f6163626465ffff9fffff"),
    ]
    return out


_INTERESTING = (0xFF, 0x9F, 0xBF, 0x5F, 0x7F, 0xC2, 0xF8, 0x1B)  # break, indefinite, bignum...


def cases(n: int, seed: int = 0) -> Iterator[bytes]:
    """Yield n fuzz inputs, deterministically for a given seed."""
    rnd = random.Random(seed)
    pool = seeds()
    for i in range(n):
        kind = i % 8
        if kind == 0:
            yield rnd.randbytes(rnd.randrange(0, 24))
            continue
        data = bytearray(rnd.choice(pool))
        if kind == 1 or not data:
            data += rnd.randbytes(rnd.randrange(1, 4))
        elif kind == 2:
            for _ in range(rnd.randrange(1, 4)):
                data[rnd.randrange(len(data))] ^= 1 << rnd.randrange(8)
        elif kind == 3:
            data[rnd.randrange(len(data))] = rnd.randrange(256)
        elif kind == 4:
            del data[rnd.randrange(len(data)):]
        elif kind == 5:
            data.insert(rnd.randrange(len(data) + 1), rnd.choice(_INTERESTING))
        elif kind == 6:
            del data[rnd.randrange(len(data))]
        else:
            other = rnd.choice(pool)
            data = data[: rnd.randrange(len(data) + 1)] + other[rnd.randrange(len(other) + 1):]
        yield bytes(data)


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, cbor.Tag) and isinstance(b, cbor.Tag):
        return a.tag == b.tag and _same(a.value, b.value)
    return type(a) is type(b) and a == b


def check(data: bytes) -> bool:
    """Decode data; return True if accepted, False if refused; raise on anything else."""
    try:
        value = cbor.loads(data)
    except DecodeError:
        return False
    again = cbor.loads(cbor.dumps(value))
    if not _same(value, again):
        raise AssertionError(f"re-encoding changed {value!r} into {again!r}")
    return True


def run(n: int, seed: int = 0) -> tuple[int, int, list[tuple[bytes, str]]]:
    """Run n cases; return (accepted, refused, crashes as (input, traceback))."""
    accepted = refused = 0
    crashes: list[tuple[bytes, str]] = []
    for data in cases(n, seed):
        try:
            if check(data):
                accepted += 1
            else:
                refused += 1
        except Exception:  # a fuzzer records every crash
            crashes.append((data, traceback.format_exc()))
    return accepted, refused, crashes


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    accepted, refused, crashes = run(args.cases, args.seed)
    for data, trace in crashes[:5]:
        print("crash on", data.hex(), file=sys.stderr)
        print(trace, file=sys.stderr)
    print(f"{args.cases} cases, {accepted} accepted, {refused} refused, {len(crashes)} crashes")
    return 1 if crashes else 0


if __name__ == "__main__":
    sys.exit(main())
