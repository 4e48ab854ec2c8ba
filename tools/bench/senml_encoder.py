"""Micro-benchmark of the SenML-CBOR hot path: cost per reading of each way to encode one lamp poll.

    python -m tools.bench.senml_encoder --before layout

Encodes the same polls (every register of the lamp role, varied values) with:

- ``definition``: ``encode_pack(build_pack(...))``, the reference the tests compare with;
- ``encoder``: :class:`gateway.delivery.senml_encoder.PackEncoder` as it is in the working tree;
- ``before``: the ``PackEncoder`` of another git revision (``--before REV``), loaded from
  ``git show REV:gateway/delivery/senml_encoder.py``, so that a change is measured against
  what it replaces in one run, on one machine state.

The ways take turns (one round each, ``--rounds`` times) so that a noisy neighbour slows
all of them alike; each figure is the median round. Prints one line per way and the ratio of
each to ``encoder``; every way's bytes are checked equal first.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path

from gateway.contracts import Number, Register, load_role
from gateway.delivery.senml_encoder import PackEncoder
from gateway.delivery.senml_records import build_pack, encode_pack

ROOT = Path(__file__).resolve().parents[2]
Encode = Callable[[float, Sequence[tuple[Register, Number]]], bytes]


def polls(count: int, seed: int = 1) -> list[tuple[float, list[tuple[Register, Number]]]]:
    """``count`` lamp polls: every register, raw values spread over each register's range."""
    regmap = load_role("lamp")
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        readings: list[tuple[Register, Number]] = []
        for reg in regmap.registers:
            if reg.type == 5:  # F32
                raw: Number = round(rnd.uniform(-500.0, 5000.0), rnd.randrange(0, 4))
            else:
                raw = rnd.randint(int(reg.minimum), int(reg.maximum))
            readings.append((reg, raw))
        out.append((1_767_225_600 + i * 0.25, readings))
    return out


def encoder_at(revision: str) -> Encode:
    """The ``encode`` of a fresh PackEncoder as ``gateway/delivery/senml_encoder.py`` was at ``revision``."""
    source = subprocess.run(
        ["git", "show", f"{revision}:gateway/delivery/senml_encoder.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout
    module = types.ModuleType(f"senml_encoder_at_{revision}")
    sys.modules[module.__name__] = module  # dataclass-style lookups of the module need it registered
    exec(compile(source, f"{revision}:gateway/delivery/senml_encoder.py", "exec"), module.__dict__)
    encode: Encode = module.PackEncoder("district-7", "lamp-1").encode
    return encode


def _definition(time_s: float, readings: Sequence[tuple[Register, Number]]) -> bytes:
    return encode_pack(build_pack("district-7", "lamp-1", time_s, readings))


def measure(ways: dict[str, Encode], count: int, rounds: int) -> dict[str, float]:
    """Median nanoseconds per reading of each way over ``rounds`` interleaved rounds of ``count`` polls."""
    work = polls(count)
    for time_s, readings in work:  # same bytes from every way, or the comparison means nothing
        expected = _definition(time_s, readings)
        for name, encode in ways.items():
            if encode(time_s, readings) != expected:
                raise SystemExit(f"{name} gives other bytes than the definition")
    readings_per_round = sum(len(r) for _, r in work)
    samples: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, encode in ways.items():
            start = time.perf_counter()
            for time_s, readings in work:
                encode(time_s, readings)
            samples[name].append((time.perf_counter() - start) / readings_per_round * 1e9)
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--before", help="git revision whose PackEncoder to compare with")
    parser.add_argument("--polls", type=int, default=500, help="lamp polls per round")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args(argv)
    ways: dict[str, Encode] = {"definition": _definition, "encoder": PackEncoder("district-7", "lamp-1").encode}
    if args.before:
        ways["before"] = encoder_at(args.before)
    result = measure(ways, args.polls, args.rounds)
    registers = len(load_role("lamp").registers)
    print(f"lamp polls of {registers} readings, {args.polls} polls x {args.rounds} rounds (median round)")
    for name, ns in result.items():
        print(f"{name:>10}: {ns:7.0f} ns per reading  ({ns / result['encoder']:.2f}x encoder)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
