"""Operator commands: the wire format, parsed and checked without touching anything.

A command is a CBOR map with text keys, published on the gateway's ``cmd`` topic::

    {"id": "c-0042", "target": "group:street-a", "action": "dim", "level": 40}
    {"id": "c-0043", "target": "lamp-7", "action": "switch", "on": false}

``id``
    1..64 characters, chosen by the sender; the result carries it back and a
    repeated id is answered from memory instead of being executed twice.
``target``
    a node id, ``group:<name>``, ``bus:<name>`` or ``all``.
``action``
    ``dim`` (with ``level``, an integer 0..100, percent) or ``switch`` (with
    ``on``, a boolean).

:func:`parse_command` is pure: it checks the shape of a command, never whether
its target exists (the router knows the configuration). Whatever the bytes, it
returns a :class:`Command` or raises :class:`CommandRejected`; nothing else.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from typing import Any, Literal

import cbor2

MAX_PAYLOAD = 4096
"""Largest command payload accepted, in bytes; a command is a few dozen."""

MALFORMED = "malformed"
"""Not CBOR, not a map, a key missing or of the wrong type."""
UNKNOWN_ACTION = "unknown_action"
"""``action`` is not one the gateway knows."""
BAD_PARAMETERS = "bad_parameters"
"""Parameters out of range, missing, or not meant for the action."""
UNKNOWN_TARGET = "unknown_target"
"""No such node, group or bus (or a target that cannot name one)."""
OFFLINE_TARGET = "offline_target"
"""The targeted node(s) are offline: nothing could confirm the command."""

Action = Literal["dim", "switch"]
TargetKind = Literal["node", "group", "bus", "all"]

_ID_MAX = 64
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_PARAMS: dict[str, str] = {"dim": "level", "switch": "on"}
_COMMON_KEYS = frozenset({"id", "target", "action"})


class CommandRejected(Exception):  # noqa: N818 - the name the API promises
    """A command that will not be executed.

    Attributes:
        reason: one of the reason codes of this module (``malformed`` ...).
        detail: a sentence for the operator.
        command_id: the command's id when it could be read, else None.
    """

    def __init__(self, reason: str, detail: str, *, command_id: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.command_id = command_id


@dataclass(frozen=True)
class Target:
    """What a command addresses: ``kind`` is node, group, bus or all; ``name`` is empty for all."""

    kind: TargetKind
    name: str

    def __str__(self) -> str:
        if self.kind == "all":
            return "all"
        return self.name if self.kind == "node" else f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Command:
    """A well-formed command. ``level`` is set for dim, ``on`` for switch."""

    id: str
    target: Target
    action: Action
    level: int | None = None
    on: bool | None = None


def parse_target(text: str) -> Target:
    """``lamp-1`` / ``group:a`` / ``bus:b`` / ``all`` -> Target; ValueError for anything else."""
    if text == "all":
        return Target("all", "")
    kind, sep, name = text.partition(":")
    if not sep:
        kind, name = "node", text
    if kind not in ("node", "group", "bus") or (sep and kind == "node"):
        raise ValueError(f"target {text!r}: expected a node id, group:<name>, bus:<name> or all")
    if not _NAME.fullmatch(name):
        raise ValueError(f"target {text!r}: names use letters, digits, '_' and '-'")
    return Target(kind, name)  # type: ignore[arg-type]  # kind checked just above


def parse_command(payload: bytes | bytearray | memoryview) -> Command:
    """Decode and check one command payload; raise CommandRejected saying why it is unusable."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandRejected(MALFORMED, f"payload of {len(payload)} bytes (limit {MAX_PAYLOAD})")
    obj = _decode(bytes(payload))
    if not isinstance(obj, dict):
        raise CommandRejected(MALFORMED, f"expected a CBOR map, got {_kind(obj)}")
    cid = obj.get("id")
    if not isinstance(cid, str) or not 1 <= len(cid) <= _ID_MAX:
        raise CommandRejected(MALFORMED, f"'id' must be text of 1..{_ID_MAX} characters")
    for key in obj:
        if not isinstance(key, str):
            raise CommandRejected(MALFORMED, "map keys must be text", command_id=cid)

    action = obj.get("action")
    if not isinstance(action, str):
        raise CommandRejected(MALFORMED, "'action' must be text", command_id=cid)
    if action not in _PARAMS:
        known = ", ".join(sorted(_PARAMS))
        raise CommandRejected(
            UNKNOWN_ACTION, f"unknown action {action[:40]!r} (known: {known})", command_id=cid
        )
    target_text = obj.get("target")
    if not isinstance(target_text, str):
        raise CommandRejected(MALFORMED, "'target' must be text", command_id=cid)
    try:
        target = parse_target(target_text[:200])
    except ValueError as exc:
        raise CommandRejected(UNKNOWN_TARGET, str(exc), command_id=cid) from None

    param = _PARAMS[action]
    extra = sorted(set(obj) - _COMMON_KEYS - {param})
    if extra:
        raise CommandRejected(
            BAD_PARAMETERS, f"{action} takes {param!r}; unexpected {extra[0][:40]!r}", command_id=cid
        )
    if param not in obj:
        raise CommandRejected(BAD_PARAMETERS, f"{action} needs {param!r}", command_id=cid)
    value = obj[param]
    if action == "dim":
        if not isinstance(value, int) or isinstance(value, bool):
            raise CommandRejected(MALFORMED, "'level' must be an integer", command_id=cid)
        if not 0 <= value <= 100:
            raise CommandRejected(BAD_PARAMETERS, f"level {value} is outside 0..100", command_id=cid)
        return Command(cid, target, "dim", level=value)
    if not isinstance(value, bool):
        raise CommandRejected(MALFORMED, "'on' must be true or false", command_id=cid)
    return Command(cid, target, "switch", on=value)


def _decode(data: bytes) -> Any:
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises many kinds (tags run decoders); all mean "not a command"
        raise CommandRejected(MALFORMED, f"not CBOR: {str(exc)[:80]}") from None
    if stream.tell() != len(data):
        raise CommandRejected(MALFORMED, f"{len(data) - stream.tell()} bytes after the CBOR item")
    return obj


def _kind(obj: object) -> str:
    names: dict[type, str] = {list: "an array", str: "text", bytes: "a byte string"}
    return names.get(type(obj), type(obj).__name__)
