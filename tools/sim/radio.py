"""The virtual radio: Bumble controllers on one in-process link, with the faults tests turn on.

Every device (a node, the gateway's scanner) is a Bumble ``Controller`` +
``Host`` + ``Device`` on one :class:`RadioLink`, Bumble's ``LocalLink`` with
three faults:

- ``loss``: the share of advertising PDUs lost, per sender and receiver
  (seeded, so a run can be repeated); connection requests are not lost;
- ``out_of_range``: addresses whose PDUs and data go nowhere and to which
  nothing arrives (a node taken out of the gateway's reach);
- :meth:`RadioLink.drop_connection`: a connection's data stops mid-way, as
  when a node vanishes during a GATT write (the other side sees a timeout);
  the next connection is clean;

and the signal each advert arrives with: ``tx_power`` (dBm, per sender, 0 by
default: what the node's firmware set through its board) less ``path_loss``
(dB, per sender, :data:`PATH_LOSS` by default) is the RSSI the receiver
reports; below :data:`SENSITIVITY` the advert is not heard (out of range), so
a node set to a lower TX power reaches less far.

Nodes that run the real firmware in the MicroPython unix port reach the radio
through :mod:`tools.sim.radio_host` (a socket per node); the gateway's bleak
code through the Bumble backend of :mod:`tools.sim.bleak_bumble`.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Any

from bumble import ll
from bumble.controller import Controller
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

__all__ = ["PATH_LOSS", "SENSITIVITY", "RadioLink", "VirtualRadio"]

PATH_LOSS = 50.0
"""dB between a node and everyone by default: at 0 dBm an advert arrives at -50 dBm (Bumble's own figure)."""
SENSITIVITY = -90.0
"""dBm: the weakest advert a receiver hears (a typical BLE receiver's sensitivity at 1 Mbit/s is -90 to -97)."""

_SUPERVISION_TIMEOUT = 0x08  # HCI reason: the connection timed out


class RadioLink(LocalLink):
    """Bumble's ``LocalLink`` with advert loss, nodes out of range and dropped connections."""

    def __init__(self, *, loss: float = 0.0, seed: int = 0) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.loss = loss
        self.out_of_range: set[str] = set()
        """Addresses (``AA:BB:CC:DD:EE:FF``) cut off from everyone."""
        self.counts: Counter[str] = Counter()
        """``adverts`` delivered per receiver, ``lost`` to the loss rate, ``out_of_range``, ``dropped`` data."""
        self.tx_power: dict[str, int] = {}
        """TX power (dBm) per address, as each node's firmware set it (0 when not set)."""
        self.path_loss: dict[str, float] = {}
        """Path loss (dB) per address (:data:`PATH_LOSS` when not set): how far the node is."""
        self._random = random.Random(seed)
        self._dropped: set[str] = set()

    def rssi(self, address: str) -> float:
        """The signal strength (dBm) adverts from ``address`` arrive with."""
        return self.tx_power.get(address, 0) - self.path_loss.get(address, PATH_LOSS)

    def _cut(self, controller: Controller) -> bool:
        return _name(controller.random_address) in self.out_of_range

    def send_advertising_pdu(self, sender_controller: Controller, packet: Any) -> None:
        """Deliver an advertising PDU to every other controller that is in range, losing ``loss`` of adverts."""
        if self._cut(sender_controller):
            self.counts["out_of_range"] += 1
            return
        advert = isinstance(packet, ll.AdvInd | ll.AdvExtInd)
        sender = _name(sender_controller.random_address)
        rssi = self.rssi(sender)
        if advert and rssi < SENSITIVITY:
            self.counts["too_weak"] += 1
            return
        if isinstance(packet, ll.ConnectInd):
            self._dropped.discard(_name(packet.advertiser_address))  # a new connection starts clean
        for receiver in list(self.controllers):
            if receiver is sender_controller or (
                advert and not receiver.le_scan_enable and receiver.pending_le_connection is None
            ):
                continue  # an advert matters only to a scanner or an initiator (not to 200 other nodes)
            if self._cut(receiver):
                self.counts["out_of_range"] += 1
                continue
            if advert and self.loss and self._random.random() < self.loss:
                self.counts["lost"] += 1
                continue
            self.counts["adverts" if advert else "other_pdus"] += 1
            if rssi == -PATH_LOSS:  # Bumble's controllers report -50 dBm: nothing to change
                asyncio.get_running_loop().call_soon(receiver.on_ll_advertising_pdu, packet)
            else:
                asyncio.get_running_loop().call_soon(_deliver, receiver, packet, round(rssi))

    def send_acl_data(self, sender_controller: Controller, destination_address: Address, transport: Any,
                      data: bytes) -> None:
        """Connection data, unless either end is out of range or its connection was dropped."""
        ends = {_name(sender_controller.random_address), _name(destination_address)}
        if ends & (self.out_of_range | self._dropped):
            self.counts["dropped"] += 1
            return
        super().send_acl_data(sender_controller, destination_address, transport, data)

    def drop_connection(self, address: str) -> None:
        """Lose all data of the connection to ``address`` open now, as when the node vanishes
        mid-connection; a connection made after it is clean again."""
        self._dropped.add(address.upper())

    def restore(self, address: str) -> None:
        """Undo :meth:`drop_connection` and take ``address`` back into range."""
        self._dropped.discard(address.upper())
        self.out_of_range.discard(address.upper())


class VirtualRadio:
    """The devices on one :class:`RadioLink`.

    Args:
        loss: share of adverts lost (see :class:`RadioLink`).
        seed: seed of the losses.
    """

    def __init__(self, *, loss: float = 0.0, seed: int = 0) -> None:
        self.link = RadioLink(loss=loss, seed=seed)
        self.devices: dict[str, Device] = {}
        self._controllers: dict[str, Controller] = {}

    async def device(self, address: str, name: str = "") -> Device:
        """A powered-on device with the static random ``address`` (its two top bits set, e.g. ``D0:...``)."""
        key = address.upper()
        if int(key[:2], 16) & 0xC0 != 0xC0:
            raise ValueError(f"{address}: a static random address has its two top bits set (C0..FF)")
        if key in self.devices:
            raise ValueError(f"{address} is already on the radio")
        controller = Controller(name or key, link=self.link)
        device = Device(name=name or key, address=Address(key), host=Host(controller, AsyncPipeSink(controller)))
        await device.power_on()
        self.devices[key] = device
        self._controllers[key] = controller
        return device

    async def remove(self, address: str) -> None:
        """Power a device off and take it off the radio; its peers see their connections to it time out."""
        key = address.upper()
        device = self.devices.pop(key)
        await device.power_off()
        self.link.remove_controller(self._controllers.pop(key))
        for controller in list(self.link.controllers):  # as a node that lost power: no goodbye
            for peer, connection in list(controller.le_connections.items()):
                if _name(peer) == key:
                    controller.on_le_disconnected(connection, _SUPERVISION_TIMEOUT)


def _deliver(receiver: Controller, packet: Any, rssi: int) -> None:
    """Hand ``packet`` to ``receiver``, its advertising reports saying ``rssi`` (Bumble's controller says -50)."""
    send = receiver.send_hci_packet

    def with_rssi(event: Any) -> None:
        for report in getattr(event, "reports", ()):
            report.rssi = rssi  # an HCI event is encoded when sent: the report still takes the value
        send(event)

    receiver.send_hci_packet = with_rssi  # type: ignore[method-assign,assignment]
    try:
        receiver.on_ll_advertising_pdu(packet)
    finally:
        del receiver.send_hci_packet


def _name(address: Address) -> str:
    return str(address).split("/")[0].upper()
