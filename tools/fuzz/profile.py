"""Fuzz the device-profile loader: every text is a Profile or a ProfileError naming the problem, never a crash.

    python -m tools.fuzz.profile --cases 100000 --seed 7

Inputs, ``--cases`` in all: byte mutations of the shipped profiles and line
mutations (lines dropped, doubled, swapped, values replaced by tokens chosen
to hit the cross-field rules: types, word orders, functions, scales, ranges,
units, addresses). A ProfileError must name the file; an accepted profile must
compile to the same register map from the same text.

Prints one line; exits 1 on any crash or hang.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from gateway.profiles import ProfileError, parse_profile
from gateway.profiles.loader import SHIPPED
from tools.fuzz.harness import Summary, main_for, mutate, mutate_toml_lines, run_target

_TOKENS = ['"coil"', '"discrete_input"', '"holding"', '"input"', '"u16"', '"s32"', '"float32"', '"bool"',
           '"low_first"', '"high_first"', "true", "false", "0", "-1", "65535", "65536", "9", "-10", "1e999",
           "nan", "0.05", "-32768", '"kWh"', '"kwh"', '"x y"', "[]", "{}", '""', '"lamp"', "2000", "70000.5"]


def seeds() -> list[bytes]:
    """The shipped profiles."""
    return [path.read_bytes() for path in sorted(SHIPPED.glob("*.toml"))]


def _inputs(n: int, seed: int) -> Iterator[bytes]:
    rnd = random.Random(seed)
    pool = seeds()
    for i in range(n):
        base = rnd.choice(pool)
        yield mutate(rnd, base, pool) if i % 2 else mutate_toml_lines(rnd, base.decode(), _TOKENS).encode()


def check(data: bytes) -> str | None:
    """Fuzz target: parse_profile on the text (bytes decoded as UTF-8, bad bytes replaced)."""
    text = data.decode("utf-8", "replace")
    try:
        profile = parse_profile(text, source="fuzz.toml")
    except ProfileError as exc:
        if not str(exc).startswith("fuzz.toml: ") or len(str(exc)) < 20:
            raise AssertionError(f"a ProfileError that says nothing: {exc!r}") from None
        return "refused"
    again = parse_profile(text, source="fuzz.toml")
    fields = ("name", "table", "address", "type", "scale", "unit", "access", "minimum", "maximum", "order")
    if [[getattr(r, f) for f in fields] for r in again.regmap.registers] != [
        [getattr(r, f) for f in fields] for r in profile.regmap.registers
    ]:
        raise AssertionError("the same text compiled twice gave two register maps")
    return None


def run(n: int, seed: int = 0) -> dict[str, Summary]:
    """``n`` mutated profiles through :func:`check`."""
    return {"profile loader": run_target(check, _inputs(n, seed))}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return main_for(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
