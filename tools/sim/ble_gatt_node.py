"""A BLE node's GATT command service in Python on the virtual radio (the firmware's: ble_beacon.GattService).

It does what the node's service is specified to do (``protocols.ble_gatt``):
open each command written to the command characteristic with the node's key,
refuse a counter it has already passed (``STATUS_REPLAY``), apply a register
write to its holding registers, and notify the sealed result. Tests and the
bench use it to drive the gateway's GATT client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bumble.gatt import Characteristic, CharacteristicValue, Service

from protocols import ble_gatt, bthome
from protocols.errors import ProtocolError
from tools.sim.radio import VirtualRadio

__all__ = ["GattNode"]


class GattNode:
    """A node at ``address`` with ``key`` and holding registers ``registers`` (address -> word)."""

    def __init__(self, radio: VirtualRadio, address: str, key: bytes, registers: dict[int, int] | None = None) -> None:
        self.radio = radio
        self.address = address.upper()
        self.frames = ble_gatt.Sealed(key, bthome.address_bytes(self.address))
        self.registers = dict(registers or {})
        self.highest = 0
        self.commands: list[tuple[int, int, Any]] = []
        """(counter, op, what) of every command accepted."""
        self.refused: list[str] = []
        self.acked = 0
        self.vanish_on_next_write = False
        """Set by a test: the next write arrives, then the node vanishes (its connection loses all data)."""

    async def start(self) -> None:
        """Put the node on the radio, its service registered, advertising connectably."""
        device = await self.radio.device(self.address, "gatt-node")
        self.device = device
        self.result_char = Characteristic(
            ble_gatt.RESULT_UUID, Characteristic.Properties.NOTIFY | Characteristic.Properties.READ,
            Characteristic.READABLE, b"")
        command: Characteristic[bytes] = Characteristic(
            ble_gatt.COMMAND_UUID, Characteristic.Properties.WRITE, Characteristic.WRITEABLE,
            CharacteristicValue(write=self._on_write))
        device.add_service(Service(ble_gatt.SERVICE_UUID, [command, self.result_char]))
        await device.start_advertising(advertising_data=b"\x02\x01\x06", advertising_interval_min=20,
                                       advertising_interval_max=20, auto_restart=True)

    def _on_write(self, _connection: Any, value: bytes) -> None:
        if self.vanish_on_next_write:
            self.vanish_on_next_write = False
            self.radio.link.drop_connection(self.address)
            return
        try:
            counter, op, body = self.frames.open_command(bytes(value))
        except ProtocolError as exc:
            self.refused.append(str(exc))
            return  # nothing to answer: the sender could not read a result sealed for it either
        if counter <= self.highest:
            self.refused.append(f"replayed counter {counter}")
            self._answer(counter, ble_gatt.STATUS_REPLAY)
            return
        self.highest = counter
        try:
            what = ble_gatt.parse_body(op, body)
        except ProtocolError as exc:
            self.refused.append(str(exc))
            self._answer(counter, ble_gatt.STATUS_BAD_OP)
            return
        self.commands.append((counter, op, what))
        answer = b""
        if op == ble_gatt.OP_WRITE:
            start, words = what
            for i, word in enumerate(words):
                self.registers[start + i] = word
        elif op == ble_gatt.OP_READ:
            start, count = what
            answer = b"".join(self.registers.get(start + i, 0).to_bytes(2, "little") for i in range(count))
        else:
            self.acked += 1
        self._answer(counter, ble_gatt.STATUS_OK, answer)

    def _answer(self, counter: int, status: int, body: bytes = b"") -> None:
        frame = self.frames.result(counter, status, body)
        task = asyncio.get_running_loop().create_task(self.device.notify_subscribers(self.result_char, frame))
        self._last_task = task
