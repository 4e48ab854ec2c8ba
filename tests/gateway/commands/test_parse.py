"""parse_command: good commands, each rejection reason of the command map, and garbage that must never escape."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from gateway.commands.parse import (
    ACTIONS,
    BAD_PARAMETERS,
    MALFORMED,
    MAX_PAYLOAD,
    REASONS,
    UNKNOWN_ACTION,
    UNKNOWN_TARGET,
    Command,
    CommandRejected,
    Target,
    parse_command,
    parse_target,
)
from tools.fuzz import commands as fuzz

T = {"iat": 1_800_000_000, "exp": 1_800_000_060}


def wire(**fields: Any) -> bytes:
    return cbor2.dumps({"id": "c-1", **T, **fields})


def rejection(payload: bytes) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        parse_command(payload)
    return info.value


def test_dim_command() -> None:
    """A dim command parses into its id, times, target and level."""
    cmd = parse_command(wire(target="lamp-1", action="dim", params={"level": 40}))
    assert cmd == Command("c-1", Target("node", "lamp-1"), "dim", {"level": 40}, 1_800_000_000.0, 1_800_000_060.0)
    assert cmd.describe() == "dim 40%"


def test_switch_command_and_target_kinds() -> None:
    """Switch carries a boolean; groups, buses and all are targets too; params may be left out."""
    cmd = parse_command(wire(target="group:street-a", action="switch", params={"on": False}))
    assert (cmd.target, cmd.action, cmd.params) == (Target("group", "street-a"), "switch", {"on": False})
    assert cmd.describe() == "switch off"
    assert parse_command(wire(target="all", action="time_sync")).params == {}
    assert parse_target("bus:bus0") == Target("bus", "bus0")
    assert parse_target("all") == Target("all", "")
    assert str(parse_target("group:a")) == "group:a"
    assert str(parse_target("lamp-1")) == "lamp-1"


def test_float_times_are_accepted() -> None:
    """iat and exp may be floats."""
    cmd = parse_command(cbor2.dumps({"id": "x", "iat": 1.5e9, "exp": 1.5e9 + 0.5, "target": "all",
                                     "action": "rebirth"}))
    assert cmd.exp - cmd.iat == 0.5


def test_level_bounds_are_inclusive() -> None:
    """0 and 100 are levels; -1 and 101 are bad parameters."""
    for level in (0, 100):
        assert parse_command(wire(target="all", action="dim", params={"level": level})).params["level"] == level
    for level in (-1, 101, 2**70):
        exc = rejection(wire(target="all", action="dim", params={"level": level}))
        assert (exc.reason, exc.command_id) == (BAD_PARAMETERS, "c-1")


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([1, 2], MALFORMED),
        ("dim", MALFORMED),
        ({**T, "target": "all", "action": "dim", "params": {"level": 1}}, MALFORMED),
        ({"id": "", **T, "target": "all", "action": "dim"}, MALFORMED),
        ({"id": "x" * 65, **T, "target": "all", "action": "dim"}, MALFORMED),
        ({"id": 7, **T, "target": "all", "action": "dim"}, MALFORMED),
        ({"id": "a", "exp": 5, "target": "all", "action": "dim"}, MALFORMED),
        ({"id": "a", "iat": 5, "target": "all", "action": "dim"}, MALFORMED),
        ({"id": "a", "iat": 9, "exp": 5, "target": "all", "action": "dim"}, MALFORMED),
        ({"id": "a", "iat": "now", "exp": 5, "target": "all", "action": "dim"}, MALFORMED),
        ({"id": "a", "iat": True, "exp": 5, "target": "all", "action": "dim"}, MALFORMED),
        ({"id": "a", "iat": 1, "exp": float("inf"), "target": "all", "action": "dim"}, MALFORMED),
        ({"id": "a", **T, "target": "all", "action": 3}, MALFORMED),
        ({"id": "a", **T, "target": 5, "action": "dim"}, MALFORMED),
        ({"id": "a", **T, "target": "all", "action": "dim", "params": [1]}, MALFORMED),
        ({"id": "a", **T, "target": "all", "action": "dim", "params": {1: 2}}, MALFORMED),
        ({"id": "a", **T, "target": "all", "action": "dim", "level": 5}, MALFORMED),
        ({"id": "a", **T, "target": "all", "action": "dim", 5: 1}, MALFORMED),
        ({"id": "a", **T, "target": "all", "action": "blink"}, UNKNOWN_ACTION),
        ({"id": "a", **T, "target": "all", "action": "dim"}, BAD_PARAMETERS),
        ({"id": "a", **T, "target": "all", "action": "switch", "params": {}}, BAD_PARAMETERS),
        ({"id": "a", **T, "target": "all", "action": "dim", "params": {"level": "50"}}, BAD_PARAMETERS),
        ({"id": "a", **T, "target": "all", "action": "dim", "params": {"level": 50.0}}, BAD_PARAMETERS),
        ({"id": "a", **T, "target": "all", "action": "dim", "params": {"level": True}}, BAD_PARAMETERS),
        ({"id": "a", **T, "target": "all", "action": "switch", "params": {"on": 1}}, BAD_PARAMETERS),
        ({"id": "a", **T, "target": "all", "action": "dim", "params": {"level": 5, "on": True}}, BAD_PARAMETERS),
        ({"id": "a", **T, "target": "all", "action": "time_sync", "params": {"at": 5}}, BAD_PARAMETERS),
        ({"id": "a", **T, "target": "lamp 1", "action": "dim"}, UNKNOWN_TARGET),
        ({"id": "a", **T, "target": "room:1", "action": "dim"}, UNKNOWN_TARGET),
        ({"id": "a", **T, "target": "node:lamp-1", "action": "dim"}, UNKNOWN_TARGET),
        ({"id": "a", **T, "target": "group:", "action": "dim"}, UNKNOWN_TARGET),
        ({"id": "a", **T, "target": "", "action": "dim"}, UNKNOWN_TARGET),
    ],
)
def test_rejection_reasons(obj: object, reason: str) -> None:
    """Each wrong shape gets its reason code; the id comes back when it could be read."""
    exc = rejection(cbor2.dumps(obj))
    assert exc.reason == reason, exc.detail
    has_id = isinstance(obj, dict) and isinstance(obj.get("id"), str) and 1 <= len(obj["id"]) <= 64
    assert exc.command_id == (obj["id"] if has_id else None)  # type: ignore[index]


@pytest.mark.parametrize(
    "payload",
    [b"", b"\xff", b"not cbor at all", b"\xa1", b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
     b"\x81" * 1000 + b"\x00", cbor2.dumps({"id": "a"}) + b"\x00", b"\xd8\x25\x41\x00",
     b"\xc1\x61a", b"\xd8\x23\x62((", bytes.fromhex("d81c81d81d00"), bytes.fromhex("a162696401")],
)
def test_garbage_is_malformed(payload: bytes) -> None:
    """Not CBOR, truncated, too deep, trailing bytes, tags, shared-reference cycles: 'malformed'."""
    exc = rejection(payload)
    assert exc.reason == MALFORMED
    assert exc.command_id is None


def test_oversized_payload_is_refused_before_decoding() -> None:
    """Payloads beyond MAX_PAYLOAD are refused unread."""
    exc = rejection(wire(target="all", action="dim", params={"level": 1}, pad="x" * MAX_PAYLOAD))
    assert exc.reason == MALFORMED
    assert "limit" in exc.detail


def test_reasons_are_documented_and_distinct() -> None:
    """The documented list: thirteen distinct codes, each with a meaning; actions known."""
    assert len(REASONS) == 13
    assert all(REASONS.values())
    assert set(ACTIONS) >= {"dim", "switch", "time_sync", "rebirth"}


def test_mutation_fuzz_small_run_only_accepts_or_refuses() -> None:
    """500 cases of the command fuzzer (python -m tools.fuzz.commands runs 100,000)."""
    for summary in fuzz.run(500, seed=11).values():
        assert summary.crashes == [] and summary.hangs == []
        assert summary.accepted > 0 and summary.refused > 0
