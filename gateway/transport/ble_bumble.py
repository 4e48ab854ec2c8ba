"""bleak on Bumble: the gateway's BLE through a Bumble host instead of BlueZ (``[ble] adapter = "bumble:..."``).

bleak takes a backend class through ``backend=``; the classes made here run
bleak's public API over one Bumble ``Device``, so the gateway's ordinary bleak
code (:mod:`gateway.transport.ble_scan`, :mod:`gateway.transport.ble_client`)
runs unchanged. Where the device comes from is a :data:`DeviceSource`:

- :class:`BumbleAdapter`: a Bumble host on an HCI transport that Bumble opens
  by name (``tcp-client:127.0.0.1:PORT`` reaches the virtual street's radio,
  started by ``streetedge sim``; ``usb:0`` a USB dongle without BlueZ);
- the virtual radio's in-process devices (``tools/sim/bleak_bumble.py``).

Scanner and client share the source's one device, as BlueZ shares an adapter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bumble.device import Advertisement, Device
from bumble.hci import Address
from bumble.transport import open_transport
from bumble.transport.common import Transport

__all__ = [
    "BUMBLE_PREFIX",
    "GATEWAY_ADDRESS",
    "BumbleAdapter",
    "DeviceSource",
    "advertisement_data",
    "bumble_backends",
    "scanner_backend",
]

BUMBLE_PREFIX = "bumble:"
"""``[ble] adapter`` values starting with this name a Bumble HCI transport instead of a BlueZ adapter."""
GATEWAY_ADDRESS = "C0:FF:EE:00:00:01"
"""The gateway's static random address on a Bumble host (the virtual radio's scanner and central)."""

DeviceSource = Callable[[], Awaitable[Device]]
"""Gives the powered-on Bumble device that scans and connects (the same one every call)."""

_BASE_UUID = "-0000-1000-8000-00805f9b34fb"
_FLAGS, _SHORT_NAME, _NAME, _TX_POWER, _SERVICE_DATA_16, _MANUFACTURER = 0x01, 0x08, 0x09, 0x0A, 0x16, 0xFF
_UUID16_LISTS = (0x02, 0x03)


class BumbleAdapter:
    """A Bumble host on the HCI transport ``spec`` (Bumble's transport names, e.g. ``tcp-client:127.0.0.1:PORT``).

    The transport opens on the first :meth:`device` call (inside the gateway's event loop); the device has
    the static random ``address``.
    """

    def __init__(self, spec: str, address: str = GATEWAY_ADDRESS) -> None:
        self.spec = spec
        self.address = address.upper()
        self._device: Device | None = None
        self._transport: Transport | None = None
        self._lock = asyncio.Lock()

    async def device(self) -> Device:
        """The powered-on device, opening the transport on first use."""
        async with self._lock:
            if self._device is None:
                transport = await open_transport(self.spec)
                try:
                    device = Device.with_hci("streetedge-gateway", Address(self.address), transport.source,
                                             transport.sink)
                    await device.power_on()
                except BaseException:
                    await transport.close()
                    raise
                self._transport, self._device = transport, device
            return self._device

    async def close(self) -> None:
        """Power the device off and close the transport (the next :meth:`device` opens them again)."""
        async with self._lock:
            device, transport = self._device, self._transport
            self._device = self._transport = None
            if device is not None:
                await device.power_off()
            if transport is not None:
                await transport.close()


def bumble_backends(adapter: str) -> tuple[BumbleAdapter, type[BaseBleakScanner], type[BaseBleakClient]]:
    """The Bumble host named by an ``adapter`` setting ``bumble:<transport>`` and bleak backends on it."""
    from gateway.transport.ble_bumble_client import client_backend  # the client half, in its own module

    if not adapter.startswith(BUMBLE_PREFIX) or len(adapter) == len(BUMBLE_PREFIX):
        raise ValueError(f"expected 'bumble:<transport>', e.g. 'bumble:tcp-client:127.0.0.1:9001', got {adapter!r}")
    host = BumbleAdapter(adapter[len(BUMBLE_PREFIX):])
    return host, scanner_backend(host.device), client_backend(host.device)


def advertisement_data(structures: list[tuple[int, bytes]], rssi: int, platform: Any = None) -> AdvertisementData:
    """bleak's AdvertisementData from raw AD structures (type, value); malformed parts are left out."""
    name: str | None = None
    service_data: dict[str, bytes] = {}
    manufacturer: dict[int, bytes] = {}
    uuids: list[str] = []
    tx_power: int | None = None
    for kind, value in structures:
        if kind in (_NAME, _SHORT_NAME):
            name = value.decode("utf-8", "replace")
        elif kind == _SERVICE_DATA_16 and len(value) >= 2:
            service_data[f"0000{int.from_bytes(value[:2], 'little'):04x}{_BASE_UUID}"] = bytes(value[2:])
        elif kind == _MANUFACTURER and len(value) >= 2:
            manufacturer[int.from_bytes(value[:2], "little")] = bytes(value[2:])
        elif kind in _UUID16_LISTS:
            uuids += [f"0000{int.from_bytes(value[i:i + 2], 'little'):04x}{_BASE_UUID}"
                      for i in range(0, len(value) - 1, 2)]
        elif kind == _TX_POWER and len(value) == 1:
            tx_power = int.from_bytes(value, "little", signed=True)
    return AdvertisementData(name, manufacturer, service_data, uuids, tx_power, rssi, (platform,))


def scanner_backend(source: DeviceSource) -> type[BaseBleakScanner]:
    """A bleak scanner backend class that scans from the device ``source`` gives."""

    class BleakScannerBumble(BaseBleakScanner):
        """bleak's scanner on a Bumble device."""

        def __init__(self, detection_callback: AdvertisementDataCallback | None, service_uuids: list[str] | None,
                     scanning_mode: str = "active", **_kwargs: Any) -> None:
            super().__init__(detection_callback, service_uuids)
            self._active = scanning_mode != "passive"
            self._device: Device | None = None

        async def start(self) -> None:
            self.seen_devices = {}
            device = await source()
            self._device = device
            device.on(device.EVENT_ADVERTISEMENT, self._on_advertisement)
            await device.start_scanning(active=self._active, filter_duplicates=False)

        async def stop(self) -> None:
            device = self._device
            if device is None:
                return
            self._device = None
            device.remove_listener(device.EVENT_ADVERTISEMENT, self._on_advertisement)
            await device.stop_scanning()

        def _on_advertisement(self, advertisement: Advertisement) -> None:
            data = advertisement_data(list(advertisement.data.ad_structures), advertisement.rssi, advertisement)
            if not self.is_allowed_uuid(data.service_uuids + list(data.service_data)):
                return
            text = str(advertisement.address).split("/")[0].upper()
            device = self.create_or_update_device(text, text, data.local_name, advertisement, data)
            self.call_detection_callbacks(device, data)

    return BleakScannerBumble
