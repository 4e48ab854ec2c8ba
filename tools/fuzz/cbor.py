"""Fuzz the gateway's one decoder of untrusted CBOR: accepted as plain data or refused, never a crash.

    python -m tools.fuzz.cbor --cases 100000 --seed 7

Everything the gateway reads from the network as CBOR (command envelopes, COSE
headers, the commands inside) goes through
:func:`gateway.commands.strict_cbor.loads_strict`: cbor2 plus the checks cbor2
leaves to its caller. This fuzzer feeds it random bytes and mutations of valid
items (RFC 8949 Appendix A, commands, a signed envelope); an accepted item must
be plain data that cbor2 encodes again. The node's own codec
(``protocols/cbor.py``, which must also run on MicroPython) decodes nothing the
gateway receives; ``tests/protocols/test_cbor_cpython.py`` runs these same
inputs through it and compares with cbor2.

Prints one line; exits 1 on any crash or hang.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2

from gateway.commands.strict_cbor import CborError, loads_strict
from tools.fuzz.harness import Summary, main_for, mutate, run_target

_APPENDIX_A = Path(__file__).resolve().parents[2] / "tests/protocols/vectors/cbor_appendix_a.json"
T0 = 1_800_000_000
TOP_TAGS = frozenset({17, 18})
"""The tags a command envelope may carry at its top (COSE_Mac0, COSE_Sign1)."""


def command_maps() -> list[dict[str, Any]]:
    """Valid commands of every action and target kind."""
    return [
        {"id": "c-1", "iat": T0, "exp": T0 + 60, "target": "lamp-1", "action": "dim", "params": {"level": 40}},
        {"id": "c-2", "iat": T0, "exp": T0 + 60, "target": "group:elm", "action": "switch", "params": {"on": True}},
        {"id": "c-3", "iat": T0 + 0.5, "exp": T0 + 1.5, "target": "all", "action": "time_sync"},
        {"id": "c-4", "iat": T0, "exp": T0 + 9, "target": "bus:bus0", "action": "rebirth", "params": {}},
        {"id": "c-5", "iat": T0, "exp": T0 + 60, "target": "lamp-1", "action": "override",
         "params": {"level": 80, "minutes": 30}},
        {"id": "c-6", "iat": T0, "exp": T0 + 60, "target": "all", "action": "set_schedule",
         "params": {"programs": {"0": [[2, 0, 100], [0, 1380, 50], [1, 0, 0]], "3": None},
                    "calendar": {"default": 0, "rules": [{"program": 0, "days": 48, "from": [12, 24], "to": [1, 2]}]}}},
        {"id": "c-7", "iat": T0, "exp": T0 + 60, "target": "lamp-1", "action": "set_config",
         "params": {"mode": 1, "latitude": 52.37}},
        {"id": "c-8", "iat": T0, "exp": T0 + 60, "target": "lamp-1", "action": "reboot", "params": {"within": 30}},
    ]


def seeds() -> list[bytes]:
    """Appendix A, the commands, a signed-envelope shape, and a few odd corners (indefinite lengths, bignums)."""
    out = [bytes.fromhex(item["hex"]) for item in json.loads(_APPENDIX_A.read_text())]
    commands = [cbor2.dumps(m) for m in command_maps()]
    out += commands
    out.append(cbor2.dumps(cbor2.CBORTag(18, [b"\xa1\x01\x27", {4: b"ops"}, commands[0], b"\x00" * 64])))
    out.append(bytes.fromhex("9fbf61615f4100420102ff61627f6163626465ffff9fffff"))
    out.append(cbor2.dumps({"a": [1, -2, 2**70, -(2**70)], b"b": [1.5, 1.1, 100000.0, None, True]}))
    return out


def inputs(n: int, seed: int = 0) -> Iterator[bytes]:
    """``n`` fuzz inputs, deterministic for a seed: one in ten random bytes, the rest mutated seeds."""
    rnd = random.Random(seed)
    pool = seeds()
    for i in range(n):
        if i % 10 == 0:
            yield rnd.randbytes(rnd.randrange(0, 40))
        else:
            yield mutate(rnd, rnd.choice(pool), pool)


def check(data: bytes) -> str | None:
    """Fuzz target: None when accepted, "refused" on CborError; anything else raised is a crash."""
    try:
        value = loads_strict(data, top_tags=TOP_TAGS)
    except CborError:
        return "refused"
    cbor2.dumps(value)  # plain data encodes again (raises, a crash, otherwise)
    return None


def run(n: int, seed: int = 0) -> dict[str, Summary]:
    """``n`` cases through :func:`check`."""
    return {"cbor (gateway, cbor2 + strict checks)": run_target(check, inputs(n, seed))}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return main_for(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
