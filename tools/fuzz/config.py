"""Fuzz the configuration loader: every text is a Config or a ConfigError naming the problem, never a crash.

    python -m tools.fuzz.config --cases 100000 --seed 7

Inputs, ``--cases`` in all: byte mutations of the documented example
(examples/gateway.toml) and of a configuration with commands and keys; line
mutations (lines dropped, doubled, swapped, values replaced by other values);
and, for one quarter, property-based tables built by hypothesis (known and
unknown tables and keys with values of every TOML type). A ConfigError must
say something; an accepted configuration must be loadable again from the
same text with the same result.

Prints one line; exits 1 on any crash or hang.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from gateway.service.config import ConfigError, parse_config
from tools.fuzz.harness import Summary, main_for, mutate, mutate_toml_lines, run_target
from tools.keys import key_entry, public_text

EXAMPLE = Path(__file__).resolve().parents[2] / "examples/gateway.toml"


def seeds() -> list[bytes]:
    """The documented example, and a configuration with [commands] and [[key]] entries."""
    key = public_text(Ed25519PrivateKey.from_private_bytes(bytes(32)))
    with_keys = (
        'site = "d7"\ngateway = "c12"\n[[bus]]\nname = "bus0"\ndevice = "/dev/ttyUSB0"\n'
        '[[node]]\nid = "lamp-1"\nbus = "bus0"\nunit = 1\n[[node]]\nid = "lamp-2"\nbus = "bus0"\nunit = 2\n'
        '[commands]\nclock_skew = 30\nmax_lifetime = 600\nreplay_db = "r.sqlite"\naudit_log = "a.jsonl"\n'
        + key_entry("ops", key, ["*"], ["*"]) + key_entry("maint", key, ["dim", "switch"], ["group:a", "lamp-2"])
        + '[groups]\na = ["lamp-1"]\n'
    )
    return [EXAMPLE.read_bytes(), with_keys.encode()]


_TOKENS = ['"x"', "0", "-1", "248", "1e999", "nan", "true", "[]", '["*"]', '"mqtt://h:99999"', '"group:zz"',
           "{}", '"lamp-1"', '"*"', "3.5", '""', "[1, 2]", '"AAAA"']


def _inputs(n: int, seed: int) -> Iterator[bytes]:
    rnd = random.Random(seed)
    pool = seeds()
    for i in range(n):
        base = rnd.choice(pool)
        if i % 2:
            yield mutate(rnd, base, pool)
        else:
            yield mutate_toml_lines(rnd, base.decode(), _TOKENS).encode()


def check(data: bytes) -> str | None:
    """Fuzz target: parse_config on the text (bytes decoded as UTF-8, bad bytes replaced)."""
    text = data.decode("utf-8", "replace")
    try:
        config = parse_config(text, source="fuzz.toml")
    except ConfigError as exc:
        if exc.source != "fuzz.toml" or len(exc.problem) < 4 or not str(exc).startswith("fuzz.toml: "):
            raise AssertionError(f"a ConfigError that says nothing: {exc!r}") from None
        return "refused"
    if parse_config(text, source="fuzz.toml") != config:
        raise AssertionError("the same text loaded twice gave two configurations")
    return None


_SCALARS = st.text(max_size=12) | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False) | st.booleans()
_VALUE = _SCALARS | st.lists(_SCALARS, max_size=3)
_KEYS = st.sampled_from(["id", "bus", "unit", "role", "name", "device", "baud", "url", "public", "actions",
                         "targets", "clock_skew", "max_lifetime", "replay_db", "audit_log", "type", "host",
                         "interval", "timeout", "site", "gateway"]) \
    | st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_TABLES = st.sampled_from(["[[bus]]", "[[node]]", "[[key]]", "[commands]", "[broker]", "[groups]", "[http]",
                           "[[x]]", "[logging]"])


def _render(site: Any, tables: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [f"site = {json.dumps(site)}", 'gateway = "g"']
    for header, body in tables:
        lines.append(header)
        lines += [f"{key} = {json.dumps(value)}" for key, value in body.items()]
    return "\n".join(lines)


CONFIGS = st.builds(_render, _VALUE, st.lists(st.tuples(_TABLES, st.dictionaries(_KEYS, _VALUE, max_size=5)),
                                               max_size=6))


def property_run(n: int, seed: int) -> Summary:
    """``n`` hypothesis-built configurations through :func:`check`."""
    summary = Summary()

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(CONFIGS)
    def prop(text: str) -> None:
        summary.add(run_target(check, [text.encode()]))

    prop()
    return summary


def run(n: int, seed: int = 0) -> dict[str, Summary]:
    """``n`` cases: three quarters mutations, one quarter property-based."""
    summary = run_target(check, _inputs(n - n // 4, seed))
    summary.add(property_run(n // 4, seed))
    return {"config loader": summary}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return main_for(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
