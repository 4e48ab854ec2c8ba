"""bleak backends on the in-process virtual radio: ``BleakScanner(..., backend=scanner_backend(radio))``.

The backends themselves are the gateway's (:mod:`gateway.transport.ble_bumble`,
what ``[ble] adapter = "bumble:..."`` uses); here their device is the
gateway's device on a :class:`~tools.sim.radio.VirtualRadio` in this process,
made on first use, so a test or a bench runs the gateway's ordinary bleak code
on the virtual street without an HCI socket. A backend class is made per radio
(no module-level radio).
"""

from __future__ import annotations

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner
from bumble.device import Device

from gateway.transport import ble_bumble
from gateway.transport.ble_bumble import GATEWAY_ADDRESS, DeviceSource, advertisement_data
from gateway.transport.ble_bumble_client import client_backend as bumble_client_backend
from tools.sim.radio import VirtualRadio

__all__ = ["GATEWAY_ADDRESS", "advertisement_data", "client_backend", "radio_device", "scanner_backend"]


def radio_device(radio: VirtualRadio, address: str = GATEWAY_ADDRESS) -> DeviceSource:
    """The device at ``address`` on ``radio`` (made on the first call) as a device source."""

    async def device() -> Device:
        return radio.devices.get(address.upper()) or await radio.device(address, "gateway")

    return device


def scanner_backend(radio: VirtualRadio, address: str = GATEWAY_ADDRESS) -> type[BaseBleakScanner]:
    """A bleak scanner backend class that scans ``radio`` from a device at ``address`` (made on first start)."""
    return ble_bumble.scanner_backend(radio_device(radio, address))


def client_backend(radio: VirtualRadio, address: str = GATEWAY_ADDRESS) -> type[BaseBleakClient]:
    """A bleak client backend class that connects from the device at ``address`` on ``radio``."""
    return bumble_client_backend(radio_device(radio, address))
