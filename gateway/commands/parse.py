"""Operator commands: the wire format and its reason codes, parsed and checked without touching anything.

A command is a CBOR map with text keys, carried as the payload of a COSE_Sign1
envelope (see :mod:`gateway.commands.envelope`)::

    {"id": "c-0042", "iat": 1767225600, "exp": 1767225660,
     "target": "group:elm-street", "action": "dim", "params": {"level": 40}}

``id``
    1..64 characters, chosen by the sender; the result carries it back and a
    repeated id is never executed twice.
``iat``, ``exp``
    issued-at and expiry, seconds since the epoch (integer or float);
    ``exp`` must be after ``iat``.
``target``
    a node id, ``group:<name>``, ``bus:<name>`` or ``all``.
``action``, ``params``
    one of :data:`ACTIONS` with the parameters it takes (``params`` may be
    left out when it takes none):

    ==================  ===============================================================
    ``dim``             ``{"level": 0..100}``
    ``switch``          ``{"on": bool}``
    ``override``        ``{"level": 0..100, "minutes": 1..1440}``: the program's timed override
    ``clear_override``  none
    ``set_schedule``    ``{"programs": {id: points | null}, "calendar": {...}}``
                        (:mod:`gateway.commands.lamp_schedule`)
    ``set_config``      ``{setting: value, ...}``: settings of the node's register map
    ``write``           ``{register: value, ...}``: writable registers or coils of a device
                        profile, each a number or a boolean within the profile's range
    ``set_unit``        ``{"unit": 1..247}``: a new Modbus unit for one node
    ``time_sync``       none
    ``reboot``          ``{"within": 10..600}`` (optional, seconds to wait for the node's return)
    ``rebirth``         none
    ``refresh``         none: read every register of the node now (settings and identity
                        included) and at its next poll, which publishes them
    ``update``          ``{"package": sha256 hex, "canary": [node | group:name, ...],
                        "stop_on_failure": bool}``: roll an update package out
                        (:mod:`gateway.commands.update_action`)
    ``cancel_update``   ``{"rollout": id}``: stop the running roll-out of update command ``id``;
                        the target must name every node of that roll-out
    ==================  ===============================================================

:func:`parse_command` is pure: it checks the shape of a command, never whether
its target exists or who signed it. Whatever the bytes, it returns a
:class:`Command` or raises :class:`CommandRejected`; nothing else.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeGuard

from gateway.commands import lamp_schedule
from gateway.commands.strict_cbor import CborError, loads_strict
from gateway.commands.update_params import check_cancel_params
from gateway.commands.update_params import check_params as check_update
from gateway.contracts import load_role
from gateway.errors import GatewayError

MAX_PAYLOAD = 4096
"""Largest command (and envelope) accepted, in bytes; a command is about a hundred."""

NOT_SIGNED = "not_signed"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"
OUT_OF_SCOPE = "out_of_scope"
EXPIRED = "expired"
ISSUED_IN_FUTURE = "issued_in_future"
REPLAYED = "replayed"
MALFORMED = "malformed"
UNKNOWN_ACTION = "unknown_action"
BAD_PARAMETERS = "bad_parameters"
UNKNOWN_TARGET = "unknown_target"
OFFLINE_TARGET = "offline_target"
UNKNOWN_PACKAGE = "unknown_package"

REASONS: dict[str, str] = {
    NOT_SIGNED: "the payload is not a COSE_Sign1 envelope (an unsigned command, or another CBOR item)",
    BAD_SIGNATURE: "the signature does not verify, or it is not EdDSA in the protected header",
    UNKNOWN_KEY: "the envelope names no key id, or one the gateway does not trust",
    OUT_OF_SCOPE: "the key may not command this action, or some node the target names",
    EXPIRED: "the command's expiry has passed (or its lifetime exceeds the gateway's limit)",
    ISSUED_IN_FUTURE: "issued-at lies further ahead of the gateway's clock than the skew allowance",
    REPLAYED: "a different command already used this id",
    MALFORMED: "not CBOR, not a well-formed envelope or command map, a key missing or of the wrong type",
    UNKNOWN_ACTION: "an action the gateway does not know",
    BAD_PARAMETERS: "parameters missing, out of range, not meant for the action, or the node cannot do it",
    UNKNOWN_TARGET: "no such node, group or bus",
    OFFLINE_TARGET: "every targeted node is offline, so nothing could confirm the command",
    UNKNOWN_PACKAGE: "update: no usable package with that image hash in the gateway's package directory",
}
"""Every reason a command is rejected (nothing executed), with its meaning; the documented list."""

TargetKind = Literal["node", "group", "bus", "all"]

_ID_MAX = 64
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ENVELOPE_KEYS = frozenset({"id", "iat", "exp", "target", "action", "params"})


class _Int:
    """An integer parameter within bounds; ``default`` (not None) makes it optional."""

    def __init__(self, lo: int, hi: int, default: int | None = None) -> None:
        self.lo, self.hi = lo, hi
        self.default = default

    @classmethod
    def register(cls, name: str, lo: int | None = None) -> _Int:
        """The bounds of a lamp register (``lo`` raises the lower one)."""
        reg = _LAMP[name]
        return cls(int(reg.minimum) if lo is None else lo, int(reg.maximum))

    def check(self, name: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{name!r} must be an integer {self.lo}..{self.hi}")
        if not self.lo <= value <= self.hi:
            raise ValueError(f"{name} {value} is outside {self.lo}..{self.hi}")
        return value


class _Bool:
    """A boolean parameter."""

    default = None

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name!r} must be true or false")
        return value


def _check_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """``set_config``: at least one setting, each a number (the node's role decides which names exist)."""
    if not params:
        raise ValueError("set_config needs at least one setting, e.g. {\"mode\": 1}")
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise ValueError(f"setting {name[:40]!r} must be a number")
    return dict(params)


def _check_writes(params: Mapping[str, Any]) -> dict[str, Any]:
    """``write``: at least one register, each a finite number or a boolean (the node's profile decides the rest)."""
    if not params:
        raise ValueError("write needs at least one register, e.g. {\"relay_1\": true}")
    for name, value in params.items():
        if not isinstance(value, int | float) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"register {name[:40]!r} must be given a number or true/false")
    return dict(params)


_LAMP = load_role("lamp")
_SPECS: dict[str, dict[str, _Int | _Bool]] = {
    "dim": {"level": _Int.register("dim_level")},
    "switch": {"on": _Bool()},
    "override": {"level": _Int.register("override_level"), "minutes": _Int.register("override_minutes", lo=1)},
    "clear_override": {},
    "set_schedule": {},
    "set_config": {},
    "set_unit": {"unit": _Int.register("unit")},
    "time_sync": {},
    "reboot": {"within": _Int(10, 600, default=120)},
    "rebirth": {},
    "refresh": {},
    "write": {},
    "update": {},
    "cancel_update": {},
}
_CUSTOM: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "set_schedule": lamp_schedule.check_params,
    "set_config": _check_settings,
    "write": _check_writes,
    "update": check_update,
    "cancel_update": check_cancel_params,
}
ACTIONS: tuple[str, ...] = tuple(_SPECS)
"""The actions the gateway knows."""


class CommandRejected(GatewayError):  # noqa: N818 - the name the API promises
    """A command that will not be executed.

    Attributes:
        reason: one of the codes in :data:`REASONS`.
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
    """A well-formed command; ``params`` holds exactly the parameters its action takes, checked."""

    id: str
    target: Target
    action: str
    params: Mapping[str, Any] = field(default_factory=dict)
    iat: float = 0.0
    exp: float = 0.0

    def describe(self) -> str:
        """A few words for results and logs, e.g. ``dim 40%`` or ``switch off``."""
        p = self.params
        if self.action == "dim":
            return f"dim {p['level']}%"
        if self.action == "switch":
            return f"switch {'on' if p['on'] else 'off'}"
        if self.action == "override":
            return f"override {p['level']}% for {p['minutes']} min"
        if self.action == "set_schedule":
            return lamp_schedule.describe(p)
        if self.action in ("set_config", "write"):
            return self.action.replace("_", " ") + " " + ", ".join(f"{k}={v}" for k, v in p.items())
        if self.action == "set_unit":
            return f"set unit {p['unit']}"
        if self.action == "update":
            return f"update to {p['package'][:12]}"
        if self.action == "cancel_update":
            return f"cancel roll-out {p['rollout']}"
        return self.action.replace("_", " ")


def parse_target(text: str) -> Target:
    """``lamp-1`` / ``group:a`` / ``bus:b`` / ``all`` -> Target; ValueError for anything else."""
    if text == "all":
        return Target("all", "")
    kind, sep, name = text.partition(":")
    if not sep:
        kind, name = "node", text
    if kind not in ("node", "group", "bus") or (sep and kind == "node"):
        raise ValueError(f"target {text[:80]!r}: expected a node id, group:<name>, bus:<name> or all")
    if not _NAME.fullmatch(name):
        raise ValueError(f"target {text[:80]!r}: names use letters, digits, '_' and '-'")
    return Target(kind, name)  # type: ignore[arg-type]  # kind checked just above


def peek_id(obj: Any) -> str | None:
    """The ``id`` of a decoded command map if it is a usable id, else None (for refusals)."""
    if isinstance(obj, Mapping):
        cid = obj.get("id")
        if isinstance(cid, str) and 1 <= len(cid) <= _ID_MAX:
            return cid
    return None


def parse_command(payload: bytes | bytearray | memoryview) -> Command:
    """Decode and check one command map; raise CommandRejected saying why it is unusable."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandRejected(MALFORMED, f"command of {len(payload)} bytes (limit {MAX_PAYLOAD})")
    try:
        obj = loads_strict(bytes(payload))
    except CborError as exc:
        raise CommandRejected(MALFORMED, f"command: {exc}") from None
    return check_command(obj)


def check_command(obj: Any) -> Command:
    """Check a decoded command map (see :func:`parse_command`)."""
    if not isinstance(obj, Mapping):
        raise CommandRejected(MALFORMED, f"expected a CBOR map, got {_kind(obj)}")
    cid = obj.get("id")
    if not isinstance(cid, str) or not 1 <= len(cid) <= _ID_MAX:
        raise CommandRejected(MALFORMED, f"'id' must be text of 1..{_ID_MAX} characters")

    def reject(reason: str, detail: str) -> CommandRejected:
        return CommandRejected(reason, detail, command_id=cid)

    for key in obj:
        if not isinstance(key, str):
            raise reject(MALFORMED, "map keys must be text")
    extra = sorted(set(obj) - _ENVELOPE_KEYS)
    if extra:
        raise reject(MALFORMED, f"unexpected key {extra[0][:40]!r} (parameters go in 'params')")
    iat_value, exp_value = obj.get("iat"), obj.get("exp")
    if not _is_time(iat_value) or not _is_time(exp_value):
        raise reject(MALFORMED, "'iat' and 'exp' must be numbers (seconds since the epoch)")
    iat, exp = float(iat_value), float(exp_value)
    if exp <= iat:
        raise reject(MALFORMED, f"'exp' ({exp_value}) must be after 'iat' ({iat_value})")
    action = obj.get("action")
    if not isinstance(action, str):
        raise reject(MALFORMED, "'action' must be text")
    target_text = obj.get("target")
    if not isinstance(target_text, str):
        raise reject(MALFORMED, "'target' must be text")
    params = obj.get("params", {})
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise reject(MALFORMED, "'params' must be a map with text keys")
    spec = _SPECS.get(action)
    if spec is None:
        raise reject(UNKNOWN_ACTION, f"unknown action {action[:40]!r} (known: {', '.join(ACTIONS)})")
    try:
        target = parse_target(target_text)
    except ValueError as exc:
        raise reject(UNKNOWN_TARGET, str(exc)) from None
    custom = _CUSTOM.get(action)
    if custom is not None:
        try:
            return Command(cid, target, action, custom(params), iat, exp)
        except ValueError as exc:
            raise reject(BAD_PARAMETERS, str(exc)[:300]) from None
    extra = sorted(set(params) - set(spec))
    if extra:
        takes = ", ".join(repr(p) for p in spec) or "no parameters"
        raise reject(BAD_PARAMETERS, f"{action} takes {takes}; unexpected {extra[0][:40]!r}")
    checked: dict[str, Any] = {}
    for name, kind in spec.items():
        if name not in params:
            if kind.default is not None:
                checked[name] = kind.default
                continue
            raise reject(BAD_PARAMETERS, f"{action} needs {name!r}")
        try:
            checked[name] = kind.check(name, params[name])
        except ValueError as exc:
            raise reject(BAD_PARAMETERS, str(exc)) from None
    return Command(cid, target, action, checked, iat, exp)


def _is_time(value: Any) -> TypeGuard[int | float]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value) and 0 <= value < 2**40


def _kind(obj: object) -> str:
    if isinstance(obj, list | tuple):
        return "an array"
    names: dict[type, str] = {str: "text", bytes: "a byte string"}
    return names.get(type(obj), type(obj).__name__)
