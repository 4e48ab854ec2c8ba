"""Command targets: which configured nodes a ``node:``, ``group:``, ``bus:`` or ``all`` target names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from gateway.commands.parse import UNKNOWN_TARGET, CommandRejected, Target
from gateway.service.config import Config, NodeConfig
from gateway.transport.ble_bus import command_nodes

__all__ = ["command_targets", "resolve_target"]


def command_targets(config: Config, *, ble: bool) -> dict[str, NodeConfig]:
    """The nodes a ``node:`` target can name: the Modbus nodes, and the BLE nodes when ``ble`` (a GATT bus runs).

    Groups, buses and ``all`` name Modbus nodes only.
    """
    return {n.id: n for n in (*config.node, *(command_nodes(config.ble) if ble else ()))}


def resolve_target(config: Config, nodes_by_id: Mapping[str, NodeConfig], target: Target) -> list[NodeConfig]:
    """The configured nodes a target names, in configuration order; CommandRejected if none."""
    if target.kind == "node":
        node = nodes_by_id.get(target.name)
        if node is None:
            raise CommandRejected(
                UNKNOWN_TARGET, f"no node {target.name!r}{_suggest(target.name, nodes_by_id)}"
            )
        return [node]
    if target.kind == "group":
        members = config.groups.get(target.name)
        if members is None:
            raise CommandRejected(
                UNKNOWN_TARGET,
                f"no group {target.name!r}{_suggest(target.name, config.groups)}",
            )
        wanted = set(members)
        nodes = [n for n in config.node if n.id in wanted]
    elif target.kind == "bus":
        names = [b.name for b in config.bus]
        if target.name not in names:
            raise CommandRejected(
                UNKNOWN_TARGET, f"no bus {target.name!r}{_suggest(target.name, names)}"
            )
        nodes = config.nodes_on(target.name)
    else:
        nodes = list(config.node)
    if not nodes:
        raise CommandRejected(UNKNOWN_TARGET, f"{target} has no nodes")
    return nodes


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
