"""The client half of :mod:`gateway.transport.ble_bumble`: ``BleakClient(address, backend=client_backend(source))``.

Connect, service discovery, write (with or without response), read,
notifications and the disconnect callback, over the Bumble device a
:data:`~gateway.transport.ble_bumble.DeviceSource` gives (shared with the
scanner backend), so the gateway's ordinary bleak client code talks GATT
through a Bumble host. Descriptors are not discovered.
"""

from __future__ import annotations

import uuid
from typing import Any

from bleak.assigned_numbers import CharacteristicPropertyName
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str
from bumble.device import Connection, Peer
from bumble.hci import Address

from gateway.transport.ble_bumble import DeviceSource

__all__ = ["client_backend"]

_PROPERTIES: tuple[tuple[int, CharacteristicPropertyName], ...] = (
    (0x02, "read"), (0x04, "write-without-response"), (0x08, "write"), (0x10, "notify"), (0x20, "indicate"))


_MTU = 247  # the largest ATT MTU of one LE data packet (251 bytes) less L2CAP's header, as BlueZ asks


def _uuid(value: Any) -> str:
    text = value.to_hex_str().lower()  # "1800" or 32 hex digits
    return normalize_uuid_str(text if len(text) == 4 else str(uuid.UUID(text)))


def client_backend(source: DeviceSource) -> type[BaseBleakClient]:
    """A bleak client backend class that connects from the device ``source`` gives."""

    class BleakClientBumble(BaseBleakClient):
        """bleak's client on a Bumble device."""

        def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
            super().__init__(address_or_ble_device, disconnected_callback=kwargs.get("disconnected_callback"),
                             timeout=kwargs.get("timeout", 10.0))
            self._connection: Connection | None = None
            self._peer: Peer | None = None

        @property
        def name(self) -> str:
            return str(self.address)

        @property
        def mtu_size(self) -> int:
            return 23 if self._connection is None else int(self._connection.att_mtu)

        @property
        def is_connected(self) -> bool:
            return self._connection is not None

        async def connect(self, pair: bool, **kwargs: Any) -> None:
            device = await source()
            connection = await device.connect(Address(self.address, Address.RANDOM_DEVICE_ADDRESS),
                                              timeout=self._timeout)
            self._connection = connection
            connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
            peer = Peer(connection)
            self._peer = peer
            await peer.request_mtu(_MTU)  # BlueZ exchanges the MTU on every connection; so does this backend
            services = BleakGATTServiceCollection()
            for service in await peer.discover_services():
                ours = BleakGATTService(service, service.handle, _uuid(service.uuid))
                services.add_service(ours)
                for char in await peer.discover_characteristics(service=service):
                    names = [name for bit, name in _PROPERTIES if int(char.properties) & bit]
                    services.add_characteristic(BleakGATTCharacteristic(
                        char, char.handle, _uuid(char.uuid), names, lambda: self.mtu_size - 3, ours))
            self.services = services

        def _on_disconnection(self, _reason: int) -> None:
            self._connection = None
            self._peer = None
            if self._disconnected_callback is not None:
                self._disconnected_callback()

        async def disconnect(self) -> None:
            if self._connection is not None:
                await self._connection.disconnect()

        async def pair(self, *args: Any, **kwargs: Any) -> None:
            raise BleakError("no pairing on a Bumble host (streetedge relies on no bonding)")

        async def unpair(self) -> None:
            raise BleakError("no pairing on a Bumble host")

        def _need(self) -> Peer:
            if self._peer is None:
                raise BleakError(f"not connected to {self.address}")
            return self._peer

        async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, **kwargs: Any) -> bytearray:
            return bytearray(await self._need().read_value(characteristic.obj))

        async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, **kwargs: Any) -> bytearray:
            raise BleakError("descriptors are not discovered on a Bumble host")

        async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: Any, response: bool) -> None:
            await self._need().write_value(characteristic.obj, bytes(data), with_response=response)

        async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: Any) -> None:
            raise BleakError("descriptors are not discovered on a Bumble host")

        async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                               **kwargs: Any) -> None:
            await self._need().subscribe(characteristic.obj, lambda value: callback(bytearray(value)))

        async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
            await self._need().unsubscribe(characteristic.obj)

    return BleakClientBumble
