"""The virtual radio's HCI port: a controller on the radio whose host is in another process.

A gateway run as a daemon (``streetedge run``) cannot share the street's
in-process :class:`~tools.sim.radio.VirtualRadio`. Bumble splits a host from
its controller along HCI: here a Bumble ``Controller`` joins the radio's link
and speaks HCI on a loopback TCP port (Bumble's ``tcp-server`` transport); the
gateway's configuration names it (``[ble] adapter =
"bumble:tcp-client:127.0.0.1:PORT"``) and its Bumble host drives the controller
as it would a USB dongle. The radio's faults apply to it like to any device.
A gateway that restarts connects again; the controller is reset by its host.

    port = HciPort(radio)
    number = await port.start()       # a free loopback port
    ...
    await port.stop()
"""

from __future__ import annotations

import socket

from bumble.controller import Controller
from bumble.transport.common import Transport
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

from tools.sim.radio import VirtualRadio

__all__ = ["HciPort", "adapter_setting"]


def adapter_setting(port: int) -> str:
    """The gateway's ``[ble] adapter`` value for an HCI port on ``port``."""
    return f"bumble:tcp-client:127.0.0.1:{port}"


class HciPort:
    """One controller on ``radio`` with its HCI on a loopback TCP port."""

    def __init__(self, radio: VirtualRadio, name: str = "gateway-hci") -> None:
        self.radio = radio
        self.name = name
        self.controller: Controller | None = None
        self._transport: Transport | None = None

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (``port`` 0: a free one); the port."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        transport = await open_tcp_server_transport_with_socket(sock)
        self._transport = transport
        self.controller = Controller(self.name, host_source=transport.source, host_sink=transport.sink,
                                     link=self.radio.link)
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        """Take the controller off the radio and stop listening."""
        if self.controller is not None:
            self.radio.link.remove_controller(self.controller)
            self.controller = None
        if self._transport is not None:
            await self._transport.close()
            self._transport = None
