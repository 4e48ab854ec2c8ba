"""What the gateway-side fuzzers share: byte mutations, the outcome count, the command line.

A fuzz target is a function ``check(data) -> str | None`` that returns None
when the input was accepted and the refusal reason when it was refused; any
exception it lets out is a crash. :func:`run_target` feeds it inputs, times
each one (a case slower than :data:`HANG` seconds counts as a hang) and counts
the outcomes.
"""

from __future__ import annotations

import argparse
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

HANG = 2.0
"""Seconds after which one case counts as a hang (generous: the machine is shared)."""

_INTERESTING = (0x00, 0xFF, 0x9F, 0xBF, 0x5F, 0x7F, 0xC2, 0xD2, 0xD8, 0xF8, 0xFB, 0x1B, 0x5B, 0x7B, 0x9B)


@dataclass
class Summary:
    """Outcomes of a fuzz run."""

    cases: int = 0
    accepted: int = 0
    refused: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    crashes: list[tuple[bytes, str]] = field(default_factory=list)
    hangs: list[tuple[bytes, float]] = field(default_factory=list)
    slowest: float = 0.0

    def add(self, other: Summary) -> None:
        """Fold another run's counts into this one."""
        self.cases += other.cases
        self.accepted += other.accepted
        self.refused += other.refused
        self.reasons.update(other.reasons)
        self.crashes += other.crashes
        self.hangs += other.hangs
        self.slowest = max(self.slowest, other.slowest)

    def line(self, name: str) -> str:
        """The one-line report: cases, accepted, refused by reason, crashes, hangs, slowest case."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.reasons.items()))
        return (
            f"{name}: {self.cases} cases, {self.accepted} accepted, {self.refused} refused ({reasons}), "
            f"{len(self.crashes)} crashes, {len(self.hangs)} hangs, slowest {self.slowest * 1000:.1f} ms"
        )


def run_target(check: Callable[[bytes], str | None], inputs: Iterable[bytes]) -> Summary:
    """Run ``check`` on every input and count what happened."""
    summary = Summary()
    for data in inputs:
        summary.cases += 1
        start = time.perf_counter()
        try:
            reason = check(data)
        except Exception:  # a fuzzer records every crash
            summary.crashes.append((data, traceback.format_exc()))
            continue
        finally:
            took = time.perf_counter() - start
            summary.slowest = max(summary.slowest, took)
            if took > HANG:
                summary.hangs.append((data, took))
        if reason is None:
            summary.accepted += 1
        else:
            summary.refused += 1
            summary.reasons[reason] += 1
    return summary


def mutate(rnd: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """One to four byte-level mutations: bit flips, replaced, inserted or deleted bytes, cuts, splices."""
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(7)
        pos = rnd.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rnd.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rnd.randrange(256)
        elif op == 2:
            buf[pos:pos] = bytes([rnd.choice(_INTERESTING)])
        elif op == 3 and buf:
            del buf[min(pos, len(buf) - 1)]
        elif op == 4:
            del buf[pos:]
        elif op == 5:
            other = rnd.choice(pool)
            buf = buf[:pos] + other[rnd.randrange(len(other) + 1):]
        else:
            buf[pos:pos] = rnd.randbytes(rnd.randrange(1, 5))
    return bytes(buf)


def mutate_toml_lines(rnd: random.Random, text: str, tokens: list[str]) -> str:
    """One to three line-level mutations of a TOML text: lines dropped, doubled, swapped, values replaced by tokens.

    Byte mutations mostly break TOML's syntax; these keep it valid and reach
    the loaders' cross-field rules instead.
    """
    lines = text.splitlines()
    for _ in range(rnd.randint(1, 3)):
        if not lines:
            break
        i = rnd.randrange(len(lines))
        op = rnd.randrange(4)
        if op == 0:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[rnd.randrange(len(lines))])
        elif op == 2:
            j = rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif "=" in lines[i]:
            lines[i] = lines[i].split("=", 1)[0] + "= " + rnd.choice(tokens)
    return "\n".join(lines)


def main_for(doc: str, run: Callable[[int, int], dict[str, Summary]], argv: list[str] | None) -> int:
    """Command line of a fuzz target: ``--cases N --seed S``; prints one line per part, exit 1 on a crash."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases per part")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.monotonic()
    parts = run(args.cases, args.seed)
    bad = False
    for name, summary in parts.items():
        print(summary.line(name))
        for data, trace in summary.crashes[:3]:
            print(f"CRASH on {data.hex()}:\n{trace}")
        for data, took in summary.hangs[:3]:
            print(f"HANG ({took:.2f} s) on {data.hex()}")
        bad = bad or bool(summary.crashes) or bool(summary.hangs)
    print(f"done in {time.monotonic() - start:.1f} s")
    return 1 if bad else 0
