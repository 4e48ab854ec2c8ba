"""Advertising BLE nodes in Python on the virtual radio: for benches and tests that need many of them.

A :class:`Beacon` seals its readings exactly as the firmware does
(``protocols.bthome`` and ``protocols.ble_adverts``) and advertises them from
a Bumble device; it is what the bench uses for hundreds of nodes, where a
MicroPython process per node would not fit the machine. The real firmware's
own adverts come through :mod:`tools.sim.radio_host`.
"""

from __future__ import annotations

from bumble.device import Device

from protocols import ble_adverts, bthome
from tools.sim.radio import VirtualRadio

__all__ = ["Beacon", "advertise"]


async def advertise(device: Device, data: bytes, interval_ms: float, scan_response: bytes | None = None) -> None:
    """Advertise ``data`` every ``interval_ms``: new data only, if the device advertises at that interval already.

    One HCI command instead of a stop and a restart (six): what lets one process drive hundreds of nodes.
    """
    current = device.legacy_advertising_set
    if (current is not None and device.is_advertising and scan_response is None
            and current.advertising_parameters.primary_advertising_interval_min == interval_ms):
        await current.set_advertising_data(data)
        return
    if device.is_advertising:
        await device.stop_advertising()
    await device.start_advertising(advertising_data=data, scan_response_data=scan_response,
                                   advertising_interval_min=interval_ms, advertising_interval_max=interval_ms)


class Beacon:
    """One advertising node of ``role`` with ``key`` at ``address`` on ``radio`` (call :meth:`start`)."""

    def __init__(self, radio: VirtualRadio, address: str, key: bytes, role: str = "meter",
                 interval_ms: float = 100.0) -> None:
        self.radio = radio
        self.address = address.upper()
        self.sealer = bthome.Sealer(key, self.address)
        self.rows, self.in_reading, self.alarms = ble_adverts.role(role)
        self.interval_ms = interval_ms
        self.counter = 0
        self.sent: list[bytes] = []
        """Every service data advertised, in order."""
        self._objects = bytearray(ble_adverts.MAX_OBJECTS)

    async def start(self) -> None:
        """Put the node's device on the radio."""
        self.device = await self.radio.device(self.address, f"node-{self.address[-5:]}")

    async def reading(self, values: list[int], status: int = 0) -> bytes:
        """Advertise a reading advert (``values`` in the order of the role's rows) with the next counter."""
        n = ble_adverts.pack_reading(self._objects, self.rows, self.in_reading, values, status)
        return await self.advertise(bytes(self._objects[:n]))

    async def alarm(self, status: int) -> bytes:
        """Advertise an alarm advert (trigger-based) for the alarm bits of ``status``."""
        n = ble_adverts.pack_alarms(self._objects, 0, self.alarms, status)
        return await self.advertise(bytes(self._objects[:n]), trigger=True)

    async def advertise(self, objects: bytes, *, trigger: bool = False) -> bytes:
        """Seal ``objects`` with the next counter and advertise them from now on; the service data."""
        self.counter += 1
        service_data = bytes(self.sealer.seal(objects, self.counter, trigger))
        await self.advertise_raw(service_data)
        return service_data

    async def advertise_raw(self, service_data: bytes) -> None:
        """Advertise exactly ``service_data`` (an attacker's replay or forgery, in tests)."""
        self.sent.append(service_data)
        await advertise(self.device, bthome.advert(service_data), self.interval_ms)

    async def stop(self) -> None:
        """Stop advertising (the node stays on the radio)."""
        if self.device.is_advertising:
            await self.device.stop_advertising()
