"""The operator keys a gateway trusts, and what each may command (its scope).

Built from the ``[[key]]`` entries of the configuration
(:mod:`gateway.service.config_commands`). A key's scope is a set of actions and a set of
nodes: the nodes its ``targets`` name (node ids, the members of groups, the
nodes of buses, or every node for ``all`` / ``*``), resolved once against the
configuration. A command is in scope when its action is among the key's
actions and every node its target resolves to is among the key's nodes; so a
key for one street may command a group inside that street, never beyond it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.commands.parse import parse_target
from gateway.service.config_ble import BLE_BUS_NAME
from gateway.service.config_commands import WILDCARD, KeyConfig, public_key_bytes

if TYPE_CHECKING:
    from gateway.service.config import Config, NodeConfig


@dataclass(frozen=True)
class TrustedKey:
    """One trusted operator key.

    Attributes:
        id: the key id (the COSE kid, UTF-8).
        public: the Ed25519 public key.
        actions: the actions it may command (None: every action).
        nodes: the node ids it may command (None: every node).
    """

    id: str
    public: Ed25519PublicKey
    actions: frozenset[str] | None
    nodes: frozenset[str] | None

    def scope_problem(self, action: str, nodes: list[NodeConfig]) -> str | None:
        """Why this key may not command ``action`` on ``nodes``, or None when it may."""
        if self.actions is not None and action not in self.actions:
            allowed = ", ".join(sorted(self.actions))
            return f"key {self.id!r} may not {action} (it may: {allowed})"
        if self.nodes is not None:
            outside = [n.id for n in nodes if n.id not in self.nodes]
            if outside:
                more = f" and {len(outside) - 3} more" if len(outside) > 3 else ""
                return f"key {self.id!r} may not command {', '.join(outside[:3])}{more}"
        return None


class KeyRing:
    """The trusted keys of one configuration, by key id."""

    def __init__(self, config: Config) -> None:
        self._keys = {k.id.encode(): _trusted(k, config) for k in config.key}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, kid: bytes) -> TrustedKey | None:
        """The trusted key with COSE kid ``kid``, or None."""
        return self._keys.get(kid)


def _trusted(entry: KeyConfig, config: Config) -> TrustedKey:
    actions = None if WILDCARD in entry.actions else frozenset(entry.actions)
    nodes: set[str] | None = set()
    for text in entry.targets:
        if text in (WILDCARD, "all"):
            nodes = None
            break
        target = parse_target(text)  # checked when the configuration was loaded
        assert nodes is not None
        if target.kind == "node":
            nodes.add(target.name)
        elif target.kind == "group":
            nodes.update(config.groups.get(target.name, []))
        elif target.kind == "bus" and target.name == BLE_BUS_NAME:
            nodes.update(n.id for n in config.ble.node)
        elif target.kind == "bus":
            nodes.update(n.id for n in config.nodes_on(target.name))
    public = Ed25519PublicKey.from_public_bytes(public_key_bytes(entry.public))
    return TrustedKey(entry.id, public, actions, None if nodes is None else frozenset(nodes))
