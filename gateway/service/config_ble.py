"""The BLE section of the gateway configuration: ``[ble]`` and its ``[[ble.node]]`` entries.

Example::

    [ble]
    adapter = "hci0"              # or "bumble:tcp-client:127.0.0.1:PORT" (the virtual street); default: BlueZ's first
    counters = "/var/lib/streetedge/ble-counters.sqlite"   # replay windows, kept across restarts
    silent_intervals = 3          # a node is offline after this many advert intervals without a good advert

    [[ble.node]]
    id = "pit-7"                  # one namespace with the Modbus nodes: topics, groups, commands
    address = "A4:C1:38:00:11:22" # the node's BLE address, as its adverts carry it
    key = "231d39c1d7cc1ab1aee224cd096db932"   # its BTHome bind key, 16 bytes in hex
    role = "meter"                # meter or env (the roles that advertise)
    interval = 10                 # seconds between the node's adverts

Adverts of addresses not listed are ignored (counted). The schema is checked
by :mod:`gateway.service.config` like every other table; :func:`check_ble`
adds the rules that span tables, each error naming its key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import msgspec

from gateway.contracts import BLE_ROLES
from gateway.service.config_check import NAME_PATTERN, suggest
from gateway.transport.ble_adapter import adapter_problem

if TYPE_CHECKING:
    from gateway.service.config import Config

BLE_BUS_NAME = "ble"
"""The bus of the BLE nodes in node states and in command targets (``bus:ble``)."""
_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
_KEY = re.compile(r"^[0-9A-Fa-f]{32}$")


class BleNodeConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[ble.node]]``: one battery node heard through its encrypted BTHome adverts."""

    id: Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, max_length=64)]
    """Node id: the last part of its data topic and of its SenML base name."""
    address: str
    """BLE address ``AA:BB:CC:DD:EE:FF``: part of the advert's nonce."""
    key: str
    """The node's AES-128 key (BTHome bind key), 32 hex digits."""
    role: str = "meter"
    """``meter`` or ``env``: what its adverts carry (``protocols.ble_adverts``)."""
    interval: Annotated[float, msgspec.Meta(ge=0.02, le=86400)] = 10.0
    """Seconds between the node's adverts: the unit of its silence."""

    @property
    def key_bytes(self) -> bytes:
        """The key as 16 bytes (checked by :func:`check_ble`)."""
        return bytes.fromhex(self.key)

    @property
    def normal_address(self) -> str:
        """The address in upper case, as scanners report it."""
        return self.address.upper()


class BleConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[ble]``: the BLE nodes and where their replay windows are kept."""

    adapter: str = ""
    """The radio: empty for the platform's default, a BlueZ adapter (``hci1``) or ``bumble:<transport>``."""
    counters: str = ""
    """SQLite file of each node's replay window; required with nodes (a restart must not accept old adverts)."""
    silent_intervals: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    """Advert intervals without a good advert after which a node counts as offline."""
    node: list[BleNodeConfig] = msgspec.field(default_factory=list)
    """The nodes (``[[ble.node]]``)."""


def check_ble(config: Config) -> tuple[str, str] | None:
    """Rules for the BLE nodes: ``(key path, problem)`` of the first broken one, or None."""
    ble = config.ble
    modbus_ids = {n.id: i for i, n in enumerate(config.node)}
    seen_ids: dict[str, int] = {}
    seen_addresses: dict[str, int] = {}
    for i, node in enumerate(ble.node):
        path = f"ble.node[{i}]"
        if node.id in modbus_ids:
            return f"{path}.id", f"{node.id!r} is already used by node[{modbus_ids[node.id]}]"
        j = seen_ids.setdefault(node.id, i)
        if j != i:
            return f"{path}.id", f"{node.id!r} is already used by ble.node[{j}]"
        if not _ADDRESS.match(node.address):
            return f"{path}.address", f"expected a BLE address like 'A4:C1:38:00:11:22', got {node.address!r}"
        j = seen_addresses.setdefault(node.normal_address, i)
        if j != i:
            return f"{path}.address", f"{node.address!r} is already ble.node[{j}]"
        if not _KEY.match(node.key):
            return f"{path}.key", f"expected 32 hex digits (a 16-byte AES key), got {len(node.key)} characters"
        if node.role not in BLE_ROLES:
            return f"{path}.role", (
                f"role {node.role!r} does not advertise{suggest(node.role, BLE_ROLES)} (roles that do: "
                f"{', '.join(BLE_ROLES)})"
            )
    for i, bus in enumerate(config.bus):
        if ble.node and bus.name == BLE_BUS_NAME:
            return f"bus[{i}].name", f"{BLE_BUS_NAME!r} names the BLE nodes (bus:{BLE_BUS_NAME}): choose another name"
    problem = adapter_problem(ble.adapter)
    if problem:
        return "ble.adapter", problem
    if ble.node and not ble.counters:
        return "ble", "missing 'counters': the replay windows must survive a restart"
    return None
