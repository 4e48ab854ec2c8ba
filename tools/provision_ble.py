"""The BLE part of ``streetedge provision``: a node's ``ble.json`` and the wait for its first advert.

A BLE node (a meter or an environment node with a radio) needs ``ble.json``
on its flash (``firmware/ble_beacon.py``): its key and its radio settings.
The key file holds the node's AES-128 key as 32 hex digits (the gateway's
``[[ble.node]] key``); the radio settings are checked with the firmware's own
rule (``protocols.ble_gatt_server.radio_problem``), so a file the node would
refuse is never written. After the reset, :func:`wait_for_advert` listens on
the gateway's adapter (``[ble] adapter``: ``hci0``, ``bumble:tcp-client:...``)
until an advert opens with the node's key (the gateway's BTHome decoder):
that advert's sender is the node's BLE address.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import time
from pathlib import Path
from typing import Any

from gateway.contracts import BLE_ROLES

INTERVAL_MS = 1000
"""Default advert interval (the virtual street's); a battery node in the field is usually given more."""
TX_POWER_DBM = 0
"""Default TX power (the firmware's)."""
_KEY = re.compile(r"^[0-9A-Fa-f]{32}$")
_radio_problem: Any = importlib.import_module("protocols.ble_gatt_server").radio_problem


def read_key(path: Path) -> str:
    """The key in ``path`` as 32 lower-case hex digits; ValueError saying what is wrong."""
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--ble-key {path}: cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    if not _KEY.match(text):
        raise ValueError(f"--ble-key {path}: must hold the node's key as 32 hex digits (16 bytes)")
    return text.lower()


def ble_settings(key: str, role: str, interval_ms: int, tx_power_dbm: int, sleep: bool) -> dict[str, Any]:
    """The ``ble.json`` a node of ``role`` gets; ValueError when the role does not advertise or a setting is bad."""
    if role not in BLE_ROLES:
        raise ValueError(f"--role {role}: a BLE node is one of {', '.join(BLE_ROLES)}")
    problem = _radio_problem(interval_ms, tx_power_dbm, sleep)
    if problem:
        raise ValueError(f"radio settings (--ble-interval-ms, --ble-tx-power): {problem}")
    return {"key": key, "interval_ms": interval_ms, "tx_power_dbm": tx_power_dbm, "sleep": sleep}


def wait_for_advert(adapter: str, key: str, timeout: float) -> tuple[str, float]:
    """The BLE address of the first advert heard on ``adapter`` that opens with ``key``, and the seconds it took.

    TimeoutError when none came within ``timeout``; ValueError for an adapter setting the gateway refuses.
    """
    start = time.monotonic()
    address = asyncio.run(asyncio.wait_for(_first_advert(adapter, bytes.fromhex(key)), timeout))
    return address, time.monotonic() - start


async def _first_advert(adapter: str, key: bytes) -> str:
    from bleak import BleakScanner
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from gateway.contracts import AuthenticationError, DecodeError, bthome, bthome_opener
    from gateway.transport.ble_adapter import BleRadio
    from gateway.transport.ble_scan import BTHOME_UUID

    radio = BleRadio(adapter)
    found: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def heard(device: BLEDevice, advertisement: AdvertisementData) -> None:
        data = advertisement.service_data.get(BTHOME_UUID)
        if data is None or found.done():
            return
        try:  # another node's advert (another key) does not open
            _, _, plain = bthome_opener(key, device.address.upper()).open(bytes(data))
            bthome.decode_objects(plain)
        except (AuthenticationError, DecodeError):
            return
        found.set_result(device.address.upper())

    try:
        async with BleakScanner(heard, backend=radio.scanner, **radio.args):
            return await found
    finally:
        await radio.close()
