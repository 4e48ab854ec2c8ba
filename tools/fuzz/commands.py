"""Fuzz the gateway's command decoder: accepted or refused with a reason, never a crash.

    python -m tools.fuzz.commands --cases 100000 --seed 7

:func:`gateway.commands.parse.parse_command`, three quarters on mutated
command maps, one quarter property-based (hypothesis builds maps with the
command's keys and values of every CBOR type). An accepted command must
survive a round trip: encoded again, it parses to the same Command; and
planning it for a lamp (:func:`gateway.commands.actions.plan_node`) must give a
plan or a ``bad_parameters`` refusal. The CBOR underneath has its own fuzzer
(``python -m tools.fuzz.cbor``).

Prints one line; exits 1 on any crash or hang.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from gateway.commands.actions import Context, plan_node
from gateway.commands.parse import ACTIONS, BAD_PARAMETERS, CommandRejected, parse_command
from gateway.contracts import load_role
from gateway.service.config import parse_config
from tools.fuzz.cbor import T0, command_maps
from tools.fuzz.harness import Summary, main_for, mutate, run_target


def command_seeds() -> list[bytes]:
    """Valid commands of every action and target kind, encoded."""
    return [cbor2.dumps(m) for m in command_maps()]


def _inputs(n: int, seed: int, pool: list[bytes]) -> Iterator[bytes]:
    rnd = random.Random(seed)
    for i in range(n):
        if i % 10 == 0:
            yield rnd.randbytes(rnd.randrange(0, 40))
        else:
            yield mutate(rnd, rnd.choice(pool), pool)


def check_command(data: bytes) -> str | None:
    """Fuzz target of parse_command, with the round-trip property for accepted commands."""
    try:
        command = parse_command(data)
    except CommandRejected as exc:
        assert exc.command_id is None or isinstance(exc.command_id, str)
        return exc.reason
    again = {"id": command.id, "iat": command.iat, "exp": command.exp, "target": str(command.target),
             "action": command.action, "params": dict(command.params)}
    if parse_command(cbor2.dumps(again)) != command:
        raise AssertionError(f"round trip changed {command!r}")
    if command.action != "rebirth":
        try:
            plan_node(command, _LAMP_NODE, load_role("lamp"), T0, _CONTEXT)
        except CommandRejected as exc:
            assert exc.reason == BAD_PARAMETERS, exc.reason
            return "plan:" + exc.reason
    return None


_CONFIG = parse_config('site = "s"\ngateway = "g"\n[[bus]]\nname = "b"\ndevice = "/dev/null"\n'
                       '[[node]]\nid = "lamp-1"\nbus = "b"\nunit = 1\n[[node]]\nid = "lamp-2"\nbus = "b"\nunit = 2\n')
_LAMP_NODE = _CONFIG.node[0]
_CONTEXT = Context({"programs": 0x00FF, "photo_on": 10, "photo_off": 30}, _CONFIG.node)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=True)
    | st.text(max_size=70) | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)
_TARGETS = st.sampled_from(["all", "lamp-1", "group:a", "bus:b", "x:y", "", "lamp 1"]) | st.text(max_size=70)
_PARAMS = st.dictionaries(st.sampled_from(["level", "on", "at", "minutes"]) | st.text(max_size=6), _VALUES,
                          max_size=3)
_FIELDS = {
    "id": st.text(max_size=70) | _VALUES,
    "iat": st.integers(-5, 2**41) | st.floats() | _VALUES,
    "exp": st.integers(-5, 2**41) | st.floats() | _VALUES,
    "target": _TARGETS | _VALUES,
    "action": st.sampled_from(ACTIONS) | st.text(max_size=12) | _VALUES,
    "params": _PARAMS | _VALUES,
}
_NEAR = st.fixed_dictionaries({
    "id": st.text(min_size=1, max_size=64),
    "iat": st.just(T0),
    "exp": st.integers(T0 + 1, T0 + 100) | st.floats(T0, T0 + 100),
    "target": st.sampled_from(["all", "lamp-1", "group:a", "bus:b"]),
    "action": st.sampled_from(ACTIONS),
    "params": st.dictionaries(st.sampled_from(["level", "on"]),
                              st.integers(-2, 102) | st.booleans() | st.none(), max_size=2),
})
COMMAND_MAPS = _NEAR | st.fixed_dictionaries(
    {}, optional={**_FIELDS, "extra": _VALUES}
)
"""Maps close to a good command, or with any subset of its keys (and one more) holding any values."""


def property_run(n: int, seed: int) -> Summary:
    """``n`` hypothesis-built command maps through :func:`check_command`."""
    summary = Summary()

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(COMMAND_MAPS)
    def prop(obj: dict[str, Any]) -> None:
        summary.add(run_target(check_command, [cbor2.dumps(obj)]))

    prop()
    return summary


def run(n: int, seed: int = 0) -> dict[str, Summary]:
    """``n`` cases: three quarters mutated commands, one quarter hypothesis-built maps."""
    command = run_target(check_command, _inputs(n - n // 4, seed, command_seeds()))
    command.add(property_run(n // 4, seed))
    return {"command decoder": command}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    return main_for(__doc__ or "", run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
