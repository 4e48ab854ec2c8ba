"""The fast SenML-CBOR path gives exactly the bytes of records.encode_pack(records.build_pack(...))."""

from __future__ import annotations

import math
import random
import struct

import pytest

from gateway.contracts import ROLES, load_role
from gateway.delivery.senml_encoder import PackEncoder
from gateway.delivery.senml_records import build_pack, encode_pack


def random_raw(reg, rng: random.Random) -> float:
    if reg.type == 5:  # F32: any float32, including tiny, huge and whole values
        choice = rng.random()
        if choice < 0.2:
            return float(rng.randrange(-1000, 1000))
        bits = struct.pack(">I", rng.randrange(0x100000000))
        value = struct.unpack(">f", bits)[0]
        return 0.5 if not math.isfinite(value) else value
    return rng.randint(reg.minimum, reg.maximum)


@pytest.mark.parametrize("role", ROLES)
def test_same_bytes_as_the_definition(role: str) -> None:
    """Random raw values on every register of every role: identical payloads."""
    regmap = load_role(role)
    rng = random.Random(role)
    encoder = PackEncoder("district-7", "node-1")
    for _ in range(200):
        readings = [(reg, random_raw(reg, rng)) for reg in regmap.registers]
        rng.shuffle(readings)
        readings = readings[: rng.randint(1, len(readings))]
        when = rng.choice([1767225600, 1767225600.25, rng.uniform(1e9, 2e9)])
        expected = encode_pack(build_pack("district-7", "node-1", when, readings))
        assert encoder.encode(when, readings) == expected


def test_non_finite_values_take_the_definition_path() -> None:
    """A NaN from a meter is encoded (or refused) exactly as the definition does."""
    regmap = load_role("sdm630")
    readings = [(reg, float("nan")) for reg in regmap.registers[:3]]
    encoder = PackEncoder("s", "m")
    try:
        expected: bytes | type[Exception] = encode_pack(build_pack("s", "m", 1.5, readings))
    except Exception as exc:  # the definition may refuse NaN: then so must we
        expected = type(exc)
    if isinstance(expected, bytes):
        assert encoder.encode(1.5, readings) == expected
    else:
        with pytest.raises(expected):
            encoder.encode(1.5, readings)


def test_empty_poll() -> None:
    """No readings: the empty pack."""
    assert PackEncoder("s", "n").encode(1.0, []) == encode_pack([])
