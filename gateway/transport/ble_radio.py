"""A BLE node's radio settings over GATT: advert interval, TX power and sleep, set and read back.

The node keeps them in its ``ble.json`` and applies them through its board
(``firmware/ble_beacon.py``); the sealed ``OP_RADIO`` command reads them (empty
body) or sets them (:func:`~gateway.contracts.ble_gatt_radio_body`), and the
node's result carries them as they are in force afterwards: the read-back.
A value out of range is refused by the gateway before anything is sent
(``ValueError`` naming it) and by the node (Modbus code 3).
"""

from __future__ import annotations

from typing import NamedTuple

from gateway.contracts import BLE_GATT_OP_RADIO, DecodeError, ble_gatt_parse_radio, ble_gatt_radio_body
from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_bus import GattRefusedError
from gateway.transport.ble_client import GattSender

__all__ = ["RadioSettings", "radio_settings"]


class RadioSettings(NamedTuple):
    """A node's radio settings."""

    interval_ms: int
    """Milliseconds between its reading adverts."""
    tx_power_dbm: int
    """Its TX power in dBm (the ESP32's levels, -12..9 in steps of 3)."""
    sleep: int
    """1: it sleeps between adverts (light sleep on the ESP32), 0: it stays awake."""


async def radio_settings(sender: GattSender, node: BleNodeConfig, new: RadioSettings | None = None) -> RadioSettings:
    """Set ``node``'s radio settings to ``new`` (None: only read them); the settings the node reports after.

    ValueError for a value out of range (nothing sent); GattRefusedError when the node refuses;
    GattError when it cannot be reached.
    """
    try:
        body = b"" if new is None else ble_gatt_radio_body(*new)
    except DecodeError as exc:
        raise ValueError(f"BLE node {node.id}: {exc}") from None
    status, answer = await sender.send(node, BLE_GATT_OP_RADIO, body)
    if status:
        raise GattRefusedError(node.id, status, "radio settings" if new is None else f"radio settings {tuple(new)}")
    return RadioSettings(*ble_gatt_parse_radio(answer))
