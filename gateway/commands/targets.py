"""Command targets: which configured nodes a ``node:``, ``group:``, ``bus:`` or ``all`` target names.

BLE nodes are targets like Modbus nodes when the gateway runs a GATT bus: a group may list them, ``all``
includes them, and ``bus:ble`` (:data:`BLE_TARGET_BUS`, the bus their node states show) names them all.
Their plans run one GATT connection per node within the sender's budget, with a result per node
(never a broadcast: there is none on the air).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

from gateway.commands.parse import UNKNOWN_TARGET, CommandRejected, Target
from gateway.service.config import Config, NodeConfig
from gateway.service.config_ble import BLE_BUS_NAME
from gateway.transport.ble_bus import BLE_BUS, command_nodes

__all__ = ["BLE_TARGET_BUS", "command_targets", "resolve_target"]

BLE_TARGET_BUS = BLE_BUS_NAME
"""``bus:ble``: the BLE nodes (a ``[[bus]]`` may not take this name while BLE nodes are configured)."""


def command_targets(config: Config, *, ble: bool) -> dict[str, NodeConfig]:
    """The nodes targets can name, Modbus nodes first: the BLE nodes too when ``ble`` (a GATT bus runs)."""
    return {n.id: n for n in (*config.node, *(command_nodes(config.ble) if ble else ()))}


def resolve_target(config: Config, nodes_by_id: Mapping[str, NodeConfig], target: Target) -> list[NodeConfig]:
    """The nodes of ``nodes_by_id`` (:func:`command_targets`) a target names, in their order; CommandRejected
    if none."""
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
        nodes = [n for n in nodes_by_id.values() if n.id in wanted]
    elif target.kind == "bus":
        names = [b.name for b in config.bus]
        ble = [n for n in nodes_by_id.values() if n.bus == BLE_BUS]
        if target.name == BLE_TARGET_BUS and ble:
            return ble
        if target.name not in names:
            raise CommandRejected(
                UNKNOWN_TARGET, f"no bus {target.name!r}{_suggest(target.name, names)}"
            )
        nodes = config.nodes_on(target.name)
    else:
        nodes = list(nodes_by_id.values())
    if not nodes:
        raise CommandRejected(UNKNOWN_TARGET, f"{target} has no nodes")
    return nodes


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
