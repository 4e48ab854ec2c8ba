"""The BLE scanner: bleak's ``BleakScanner`` feeding an :class:`~gateway.transport.ble_receiver.AdvertReceiver`.

On a cabinet bleak uses the platform's stack (BlueZ on Linux); the virtual
street hands in its Bumble backend (``tools/sim/bleak_bumble.py``) through
``backend=``, the seam bleak offers for this. Nothing here knows a format:
the scanner passes on the BTHome service data of each advert it hears, and
between adverts wakes up to declare silent nodes offline.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner

from gateway.transport.ble_receiver import AdvertReceiver

log = logging.getLogger(__name__)

__all__ = ["BTHOME_UUID", "BleListener", "BleScannerBackend"]

BleScannerBackend = type[BaseBleakScanner]
"""A bleak scanner backend class (bleak's ``backend=``)."""

BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
"""The BTHome service-data UUID (0xFCD2) as bleak spells it."""


class BleListener:
    """Scans until cancelled, handing BTHome adverts to ``receiver`` and checking silences.

    Args:
        receiver: where adverts go.
        backend: a bleak scanner backend class; None for the platform's own.
        scanner_args: more keyword arguments for ``BleakScanner`` (e.g. ``bluez={...}``).
    """

    def __init__(self, receiver: AdvertReceiver, *, backend: BleScannerBackend | None = None,
                 scanner_args: dict[str, Any] | None = None) -> None:
        self.receiver = receiver
        self.backend = backend
        self.scanner_args = scanner_args or {}
        self.heard = 0
        """Adverts with BTHome service data passed on."""

    def on_advert(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        """bleak's detection callback: pass BTHome service data on (the receiver counts strangers)."""
        data = advertisement.service_data.get(BTHOME_UUID)
        if data is None:
            return
        self.heard += 1
        self.receiver.receive(device.address, data, advertisement.rssi)

    async def run(self) -> None:
        """Scan until cancelled."""
        scanner = BleakScanner(self.on_advert, backend=self.backend, **self.scanner_args)
        try:
            async with scanner:
                log.info("BLE scanning for %d node(s)", len(self.receiver.nodes()))
                while True:  # noqa: ASYNC110 - a timer for the silence deadlines, not a wait for a condition
                    await asyncio.sleep(self.receiver.check_silence())
        finally:
            self.receiver.windows.close()

