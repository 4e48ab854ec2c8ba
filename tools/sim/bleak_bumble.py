"""A bleak backend on the virtual radio: ``BleakScanner(..., backend=scanner_backend(radio))``.

bleak takes a backend class through ``backend=``; the classes made here run
bleak's public API over a Bumble device on a :class:`~tools.sim.radio.VirtualRadio`,
so the gateway's ordinary bleak code scans the virtual street without an
adapter or BlueZ. A backend class is made per radio (no module-level radio).
"""

from __future__ import annotations

from typing import Any

from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bumble.device import Advertisement, Device

from tools.sim.radio import VirtualRadio

__all__ = ["GATEWAY_ADDRESS", "advertisement_data", "scanner_backend"]

GATEWAY_ADDRESS = "C0:FF:EE:00:00:01"
"""The gateway's (static random) address on the virtual radio."""
_BASE_UUID = "-0000-1000-8000-00805f9b34fb"
_FLAGS, _SHORT_NAME, _NAME, _TX_POWER, _SERVICE_DATA_16, _MANUFACTURER = 0x01, 0x08, 0x09, 0x0A, 0x16, 0xFF
_UUID16_LISTS = (0x02, 0x03)


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


def scanner_backend(radio: VirtualRadio, address: str = GATEWAY_ADDRESS) -> type[BaseBleakScanner]:
    """A bleak scanner backend class that scans ``radio`` from a device at ``address`` (made on first start)."""

    class BleakScannerBumble(BaseBleakScanner):
        """bleak's scanner on a Bumble device of the virtual radio."""

        def __init__(self, detection_callback: AdvertisementDataCallback | None, service_uuids: list[str] | None,
                     scanning_mode: str = "active", **_kwargs: Any) -> None:
            super().__init__(detection_callback, service_uuids)
            self._active = scanning_mode != "passive"
            self._device: Device | None = None

        async def start(self) -> None:
            self.seen_devices = {}
            device = radio.devices.get(address.upper()) or await radio.device(address, "gateway")
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
