"""Core deterministic CBOR: the same bytes on CPython and on the MicroPython unix port, and against cbor2."""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import cbor
from tools.sim.street import micropython_path

ROOT = Path(__file__).resolve().parents[2]
_SETTINGS = settings(max_examples=200, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])

_KEYS = st.one_of(st.integers(-(2**20), 2**20), st.text(max_size=6), st.booleans())
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.text(max_size=8),
                    st.binary(max_size=8), st.floats(allow_nan=False, width=64))
_VALUES = st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(_KEYS, inner, max_size=5)), max_leaves=20)


def _shuffled(value: Any, rng: random.Random) -> Any:
    """The same value with every map's insertion order shuffled."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


def _keys_in_order(data: bytes) -> bool:
    """Every map of the encoding has its keys in strictly increasing bytewise order."""
    def walk(offset: int) -> int:
        head = data[offset]
        major, info = head >> 5, head & 0x1F
        _, end = cbor.loads_prefix(data, offset)
        if major == 5:
            pos = offset + 1 + {24: 1, 25: 2, 26: 4, 27: 8}.get(info, 0)
            previous = b""
            for _ in range(len(cbor.loads_prefix(data, offset)[0])):
                key_end = walk(pos)
                key = data[pos:key_end]
                if previous and not previous < key:
                    raise AssertionError(f"{previous.hex()} before {key.hex()}")
                previous = key
                pos = walk(key_end)
            return pos
        if major == 4:
            pos = offset + 1 + {24: 1, 25: 2, 26: 4, 27: 8}.get(info, 0)
            for _ in range(len(cbor.loads_prefix(data, offset)[0])):
                pos = walk(pos)
            return pos
        return end
    return walk(0) == len(data)


@_SETTINGS
@given(_VALUES, st.integers(0, 2**32))
def test_bytes_do_not_depend_on_insertion_order(value: Any, seed: int) -> None:
    data = cbor.dumps(value, True)
    assert cbor.dumps(_shuffled(value, random.Random(seed)), True) == data
    assert cbor2.loads(data) == value
    assert _keys_in_order(data)


@_SETTINGS
@given(st.recursive(st.one_of(st.integers(0, 2**40), st.text(max_size=6)),
                    lambda inner: st.dictionaries(st.text(max_size=30), inner, max_size=5), max_leaves=20))
def test_text_keyed_maps_match_cbor2_canonical(value: Any) -> None:
    # where every key is text, length-first (cbor2) and bytewise (RFC 8949) orders agree
    assert cbor.dumps(value, True) == cbor2.dumps(value, canonical=True)


def test_micropython_writes_the_same_bytes() -> None:
    """200 random nested maps, sent to the unix port as plain CBOR and re-encoded there deterministically."""
    rng = random.Random(8949)
    def build(depth: int) -> Any:
        kind = rng.randrange(6 if depth < 3 else 4)
        if kind == 0:
            return rng.randint(-(2**40), 2**40)
        if kind == 1:
            return "".join(rng.choice("abcz\u00e9\u20ac") for _ in range(rng.randrange(5)))
        if kind == 2:
            return rng.choice([1.5, -0.0, 1e300, 3.4028234663852886e38, 0.1, 65504.0])
        if kind == 3:
            return rng.choice([None, True, False, b"\x00\xff"])
        if kind == 4:
            return [build(depth + 1) for _ in range(rng.randrange(4))]
        keys = [rng.choice([rng.randint(-300, 70000), "k%d" % rng.randrange(40), "long-key-" * rng.randrange(4)])
                for _ in range(rng.randrange(6))]
        return {k: build(depth + 1) for k in keys}
    values = [build(0) for _ in range(200)]
    script = (
        "import sys, binascii\n"
        "from protocols import cbor\n"
        "for line in sys.stdin.read().split():\n"
        "    print(binascii.hexlify(cbor.dumps(cbor.loads(binascii.unhexlify(line)), True)).decode())\n"
    )
    # the unix port gets each value in cbor2's own encoding (insertion order), so nothing is pre-sorted
    payload = "\n".join(cbor2.dumps(_shuffled(v, rng)).hex() for v in values)
    env = dict(os.environ, MICROPYPATH=str(ROOT))
    proc = subprocess.run([micropython_path(), "-X", "heapsize=128K", "-c", script], input=payload,
                          capture_output=True, text=True, timeout=120, env=env, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    theirs = proc.stdout.split()
    assert len(theirs) == len(values)
    for value, hexed in zip(values, theirs, strict=True):
        assert hexed == cbor.dumps(value, True).hex(), value
