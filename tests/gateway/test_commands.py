"""parse_command: good commands, each rejection reason, and garbage that must never escape."""

from __future__ import annotations

import random

import cbor2
import pytest

from gateway.commands import (
    BAD_PARAMETERS,
    MALFORMED,
    MAX_PAYLOAD,
    UNKNOWN_ACTION,
    UNKNOWN_TARGET,
    Command,
    CommandRejected,
    Target,
    parse_command,
    parse_target,
)


def rejection(payload: bytes) -> CommandRejected:
    with pytest.raises(CommandRejected) as info:
        parse_command(payload)
    return info.value


def test_dim_command() -> None:
    """A dim command parses into its id, target and level."""
    cmd = parse_command(cbor2.dumps({"id": "c-1", "target": "lamp-1", "action": "dim", "level": 40}))
    assert cmd == Command("c-1", Target("node", "lamp-1"), "dim", level=40)


def test_switch_command_and_target_kinds() -> None:
    """Switch carries a boolean; groups, buses and all are targets too."""
    cmd = parse_command(cbor2.dumps({"id": "x", "target": "group:street-a", "action": "switch", "on": False}))
    assert (cmd.target, cmd.action, cmd.on, cmd.level) == (Target("group", "street-a"), "switch", False, None)
    assert parse_target("bus:bus0") == Target("bus", "bus0")
    assert parse_target("all") == Target("all", "")
    assert str(parse_target("group:a")) == "group:a"
    assert str(parse_target("lamp-1")) == "lamp-1"


def test_level_bounds_are_inclusive() -> None:
    """0 and 100 are levels; -1 and 101 are bad parameters."""
    for level in (0, 100):
        assert parse_command(cbor2.dumps({"id": "a", "target": "all", "action": "dim", "level": level})).level == level
    for level in (-1, 101, 2**70):
        exc = rejection(cbor2.dumps({"id": "a", "target": "all", "action": "dim", "level": level}))
        assert (exc.reason, exc.command_id) == (BAD_PARAMETERS, "a")


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([1, 2], MALFORMED),
        ("dim", MALFORMED),
        ({"target": "all", "action": "dim", "level": 1}, MALFORMED),
        ({"id": "", "target": "all", "action": "dim", "level": 1}, MALFORMED),
        ({"id": "x" * 65, "target": "all", "action": "dim", "level": 1}, MALFORMED),
        ({"id": 7, "target": "all", "action": "dim", "level": 1}, MALFORMED),
        ({"id": "a", "target": "all", "action": 3, "level": 1}, MALFORMED),
        ({"id": "a", "target": 5, "action": "dim", "level": 1}, MALFORMED),
        ({"id": "a", "target": "all", "action": "dim", "level": "50"}, MALFORMED),
        ({"id": "a", "target": "all", "action": "dim", "level": 50.0}, MALFORMED),
        ({"id": "a", "target": "all", "action": "dim", "level": True}, MALFORMED),
        ({"id": "a", "target": "all", "action": "switch", "on": 1}, MALFORMED),
        ({"id": "a", "target": "all", "action": "dim", "level": 1, 5: 1}, MALFORMED),
        ({"id": "a", "target": "all", "action": "blink"}, UNKNOWN_ACTION),
        ({"id": "a", "target": "all", "action": "dim"}, BAD_PARAMETERS),
        ({"id": "a", "target": "all", "action": "switch"}, BAD_PARAMETERS),
        ({"id": "a", "target": "all", "action": "dim", "level": 5, "on": True}, BAD_PARAMETERS),
        ({"id": "a", "target": "all", "action": "dim", "levle": 5}, BAD_PARAMETERS),
        ({"id": "a", "target": "lamp 1", "action": "dim", "level": 5}, UNKNOWN_TARGET),
        ({"id": "a", "target": "room:1", "action": "dim", "level": 5}, UNKNOWN_TARGET),
        ({"id": "a", "target": "node:lamp-1", "action": "dim", "level": 5}, UNKNOWN_TARGET),
        ({"id": "a", "target": "group:", "action": "dim", "level": 5}, UNKNOWN_TARGET),
        ({"id": "a", "target": "", "action": "dim", "level": 5}, UNKNOWN_TARGET),
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
     b"\xc1\x61a", b"\xd8\x23\x62(("],
)
def test_garbage_is_malformed(payload: bytes) -> None:
    """Not CBOR, truncated, nested too deep, trailing bytes, bad tags: all 'malformed', id None."""
    exc = rejection(payload)
    assert exc.reason == MALFORMED
    assert exc.command_id is None


def test_oversized_payload_is_refused_before_decoding() -> None:
    """Payloads beyond MAX_PAYLOAD are refused unread."""
    exc = rejection(cbor2.dumps({"id": "a", "target": "all", "action": "dim", "level": 1, "pad": "x" * MAX_PAYLOAD}))
    assert exc.reason == MALFORMED
    assert "limit" in exc.detail


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            buf[pos:pos] = bytes([rng.randrange(256)])
        elif op == 2 and buf:
            del buf[min(pos, len(buf) - 1)]
        else:
            buf[pos:] = buf[pos : pos + rng.randrange(4)]
    return bytes(buf)


def test_random_and_mutated_payloads_only_ever_reject() -> None:
    """Thousands of random and mutated payloads: a Command or CommandRejected, nothing else."""
    rng = random.Random(20240617)
    seeds = [
        cbor2.dumps({"id": "c-1", "target": "lamp-1", "action": "dim", "level": 40}),
        cbor2.dumps({"id": "c-2", "target": "group:street-a", "action": "switch", "on": True}),
        cbor2.dumps({"id": "c-3", "target": "all", "action": "dim", "level": 0}),
    ]
    outcomes = {"parsed": 0, "rejected": 0}
    for i in range(6000):
        if i % 3 == 0:
            payload = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        else:
            payload = _mutate(rng, rng.choice(seeds))
        try:
            cmd = parse_command(payload)
        except CommandRejected as exc:
            assert exc.reason in {MALFORMED, UNKNOWN_ACTION, BAD_PARAMETERS, UNKNOWN_TARGET}
            assert exc.command_id is None or isinstance(exc.command_id, str)
            outcomes["rejected"] += 1
        else:
            assert isinstance(cmd, Command)
            outcomes["parsed"] += 1
    assert outcomes["parsed"] > 0
    assert outcomes["rejected"] > 0
