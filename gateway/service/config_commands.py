"""The command section of the gateway configuration: ``[commands]`` and the trusted ``[[key]]`` entries.

Example::

    [commands]
    clock_skew = 30               # seconds a command's issued-at may lie in the future
    max_lifetime = 3600           # longest expiry - issued-at accepted, seconds
    replay_db = "/var/lib/streetedge/commands.sqlite"
    audit_log = "/var/lib/streetedge/audit.jsonl"

    [[key]]
    id = "maint-elm"              # the COSE kid the operator signs with
    public = "mF2d...Q8"          # Ed25519 public key, base64url (``streetedge keys new`` prints it)
    actions = ["dim", "switch"]   # or ["*"]
    targets = ["group:elm-street"]   # node ids, group:<name>, bus:<name>, or "all"

A key may command a target only if every node the target names is among the
nodes its ``targets`` name, and only with the listed actions. A gateway with
keys must name its replay database and its audit log: a gateway that can run
commands keeps both across restarts. The schema is checked by
:mod:`gateway.service.config` like every other table; :func:`check_commands` adds the
rules that span tables.
"""

from __future__ import annotations

import base64
import binascii
import difflib
from typing import TYPE_CHECKING, Annotated

import msgspec

from gateway.commands.parse import ACTIONS, parse_target
from gateway.service.config_ble import BLE_BUS_NAME
from gateway.service.config_check import NAME_PATTERN

if TYPE_CHECKING:
    from gateway.service.config import Config

KeyId = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, max_length=64)]  # errors read as for config.Name
WILDCARD = "*"


class CommandsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[commands]``: freshness rules and where the command path keeps its state."""

    clock_skew: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    """Seconds a command's ``iat`` may lie ahead of the gateway's clock (clocks differ)."""
    max_lifetime: Annotated[float, msgspec.Meta(ge=1, le=7 * 86400)] = 3600.0
    """Longest ``exp - iat`` accepted, seconds; it bounds how long ids are remembered."""
    replay_db: str = ""
    """SQLite file of the command ids seen and their results (survives restarts); required with keys."""
    audit_log: str = ""
    """Hash-chained audit log (JSON lines); required with keys."""


class KeyConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[key]]``: an operator key the gateway trusts, and what it may command."""

    id: KeyId
    """Key id: the COSE ``kid`` (UTF-8) the operator's commands carry."""
    public: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    """Ed25519 public key, 32 bytes in base64url (padding optional)."""
    actions: list[Annotated[str, msgspec.Meta(min_length=1, max_length=32)]]
    """Actions the key may command, or ``["*"]`` for every action."""
    targets: list[Annotated[str, msgspec.Meta(min_length=1, max_length=200)]]
    """Node ids, ``group:<name>``, ``bus:<name>``, ``all`` or ``*``: the nodes the key may command."""


def public_key_bytes(text: str) -> bytes:
    """The raw public key of a ``public`` value; ValueError unless it is 32 bytes of base64url."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this is {len(raw)}")
    return raw


def check_commands(config: Config) -> tuple[str, str] | None:
    """Rules across tables for keys and commands: ``(key path, problem)`` of the first, or None."""
    seen: dict[str, int] = {}
    groups = set(config.groups)
    buses = {b.name for b in config.bus} | ({BLE_BUS_NAME} if config.ble.node else set())  # bus:ble
    nodes = {n.id for n in config.node} | {n.id for n in config.ble.node}  # BLE nodes take commands over GATT
    for i, key in enumerate(config.key):
        j = seen.setdefault(key.id, i)
        if j != i:
            return f"key[{i}].id", f"{key.id!r} is already used by key[{j}]"
        try:
            public_key_bytes(key.public)
        except ValueError as exc:
            return f"key[{i}].public", f"{exc} (use the line `streetedge keys new` prints)"
        for k, action in enumerate(key.actions):
            if action != WILDCARD and action not in ACTIONS:
                close = difflib.get_close_matches(action, ACTIONS, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(ACTIONS)}, *)"
                return f"key[{i}].actions[{k}]", f"unknown action {action!r}{hint}"
        if not key.actions:
            return f"key[{i}].actions", "a key needs at least one action"
        if not key.targets:
            return f"key[{i}].targets", "a key needs at least one target"
        for k, text in enumerate(key.targets):
            problem = _target_problem(text, nodes, groups, buses)
            if problem:
                return f"key[{i}].targets[{k}]", problem
    if config.key:
        for name in ("replay_db", "audit_log"):
            if not getattr(config.commands, name):
                return "commands", f"missing {name!r}: a gateway that trusts keys keeps it on disk"
    return None


def _target_problem(text: str, nodes: set[str], groups: set[str], buses: set[str]) -> str | None:
    if text == WILDCARD:
        return None
    try:
        target = parse_target(text)
    except ValueError as exc:
        return str(exc)
    known = {"node": nodes, "group": groups, "bus": buses}.get(target.kind)
    if known is not None and target.name not in known:
        close = difflib.get_close_matches(target.name, sorted(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {target.kind} {target.name!r}{hint}"
    return None
