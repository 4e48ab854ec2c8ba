"""What the page shows, computed from the gateway's live state: nodes, their state and alarms, the links.

Pure functions over :class:`~gateway.service.stats.GatewayStats` and the configuration; no I/O. A node's
state is one of ``online``, ``autonomous`` (a lamp following its own program because it heard no
gateway), ``safe_mode`` (the node runs on defaults: bad configuration or a crash loop), ``alarm`` (an
alarm bit of its ``status`` register is set), ``offline`` (polls fail) or ``unknown`` (not polled yet).
Alarm bits and their names come from the role's ``STATUS_*`` and ``ALARMS`` constants in ``protocols``.
Every node carries its transport: ``RS-485`` or ``Modbus TCP`` with its bus and unit, or ``BLE`` with
its radio address and the RSSI of its last good advert (the advert's age is the age of ``last_poll``).
"""

from __future__ import annotations

import functools
import time
from typing import Any

from gateway.contracts import ble_role, load_role, role_constants
from gateway.service.config import Config
from gateway.service.stats import GatewayStats, NodeStats

PLOTTED = {"lamp": ("power", "energy"), "meter": ("flow", "volume"), "env": ("pm25", "pm10", "noise")}
"""Per role, the values kept in the history and plotted: energy, water flow and air quality."""
_COMMON = role_constants("common")
SAFE_NODE_BITS = _COMMON["NODE_SAFE_CONFIG"] | _COMMON["NODE_SAFE_CRASH_LOOP"]
LAMP = role_constants("lamp")
BLE_SUFFIX = "-ble"
BLE = "BLE"
"""The transport the page names for nodes heard over Bluetooth Low Energy adverts."""


@functools.cache
def alarm_bits(role: str) -> tuple[tuple[int, str], ...]:
    """``(bit, name)`` of each alarm bit of ``role``'s status register (none for roles without them)."""
    try:
        constants = role_constants(base_role(role))
    except ImportError:  # a device profile, not a firmware role
        return ()
    mask = constants.get("ALARMS")
    flags = [(v, k.removeprefix("STATUS_").lower()) for k, v in constants.items() if k.startswith("STATUS_")]
    if mask is None:  # a role that does not list its alarms: its faults are
        return tuple((bit, name) for bit, name in flags if name.endswith("fault"))
    return tuple((bit, name) for bit, name in flags if bit & mask)


def base_role(role: str) -> str:
    """The firmware role behind a node's role: a BLE node's ``meter-ble`` is a ``meter`` (same status bits)."""
    return role.removesuffix(BLE_SUFFIX)


@functools.cache
def units(role: str) -> dict[str, str]:
    """Unit of each register of ``role`` that has one, by register name."""
    try:
        return {r.name: r.unit for r in load_role(role).registers if r.unit}
    except ValueError:
        return {}


@functools.cache
def plotted(role: str) -> tuple[str, ...]:
    """The values of ``role`` kept in the history and plotted (a BLE node's: those of its firmware role it carries)."""
    try:
        names = {r.name for r in load_role(role).registers}
    except ValueError:
        return ()
    return tuple(name for name in PLOTTED.get(base_role(role), ()) if name in names)


def active_alarms(node: NodeStats) -> list[str]:
    """Names of the alarm bits set in the node's last ``status`` reading."""
    status = node.values.get("status")
    if not isinstance(status, int) or node.online is not True:
        return []
    return [name for bit, name in alarm_bits(node.role) if status & bit]


def node_state(node: NodeStats) -> str:
    """One word for the node: online, autonomous, safe_mode, alarm, offline or unknown."""
    if node.online is None:
        return "unknown"
    if not node.online:
        return "offline"
    values = node.values
    if int(values.get("node_status", 0)) & SAFE_NODE_BITS or (
        node.role == "lamp" and int(values.get("status", 0)) & LAMP["STATUS_SAFE_MODE"]
    ):
        return "safe_mode"
    if active_alarms(node):
        return "alarm"
    if node.role == "lamp" and values.get("control") == LAMP["CONTROL_AUTONOMOUS"]:
        return "autonomous"
    return "online"


def node_view(node: NodeStats, transport: str, address: str | None = None) -> dict[str, Any]:
    """One node as the page shows it (``address``: a BLE node's radio address; its ``last_poll`` is then
    the time of its last good advert, and ``rssi`` the signal strength it was heard with, when known)."""
    view = {
        "id": node.id,
        "role": node.role,
        "bus": node.bus,
        "unit": node.unit,
        "transport": transport,
        "state": node_state(node),
        "alarms": active_alarms(node),
        "values": dict(node.values),
        "last_poll": node.last_poll,  # the page shows its age against the view's ``ts``
        "error": node.last_error if node.online is False else None,
    }
    if address is not None:
        view["address"] = address
        view["rssi"] = node.rssi
    return view


def transports(config: Config) -> dict[str, str]:
    """How each bus reaches its nodes, for the page: ``RS-485`` (rtu), ``Modbus TCP`` (BLE nodes hang on no bus)."""
    return {b.name: "RS-485" if b.type == "rtu" else "Modbus TCP" for b in config.bus}


def street_view(config: Config, stats: GatewayStats, queue_depth: int, now: float | None = None) -> dict[str, Any]:
    """The whole page's live state: nodes in configuration order, buses, broker, outbox, commands."""
    now = time.time() if now is None else now
    links = transports(config)
    nodes = [node_view(stats.nodes[n.id], links.get(n.bus, "?")) for n in config.node if n.id in stats.nodes]
    nodes += [node_view(stats.nodes[n.id], BLE, n.normal_address) for n in config.ble.node if n.id in stats.nodes]
    buses = []
    for bus in stats.buses.values():
        attempts = bus.requests + bus.timeouts + bus.errors
        skipped = sum(stats.nodes[n.id].skipped for n in config.nodes_on(bus.name) if n.id in stats.nodes)
        polls = sum(stats.nodes[n.id].polls for n in config.nodes_on(bus.name) if n.id in stats.nodes)
        buses.append({
            "name": bus.name, "connected": bus.connected, "requests": bus.requests,
            "error_rate": round((bus.timeouts + bus.errors) / attempts, 4) if attempts else 0.0,
            "skip_rate": round(skipped / (skipped + polls), 4) if skipped + polls else 0.0,
        })
    # From the configuration, not the live nodes: a page keeps the units it was first sent.
    roles = {n.role for n in config.node} | {ble_role(n.role) for n in config.ble.node}
    return {
        "site": config.site, "gateway": config.gateway, "ts": now,
        "nodes": nodes,
        "buses": buses,
        "broker": {"connected": stats.broker_connected, "connects": stats.broker_connects,
                   "url": config.broker.urls[0]},
        "outbox": {"depth": stats.outbox_depth, "stored": stats.outbox_stored, "dropped": stats.outbox_dropped,
                   "queue": queue_depth},
        "commands": dict(stats.commands),
        "units": {role: units(role) for role in roles},
        "plotted": {role: list(plotted(role)) for role in roles},
    }
