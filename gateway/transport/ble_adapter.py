"""Which radio the gateway's bleak code uses: the ``[ble] adapter`` setting made into bleak backends and arguments.

- ``""``: the platform's default adapter (BlueZ's first, on a cabinet);
- ``"hci1"``: that BlueZ adapter (bleak's ``bluez={"adapter": ...}``);
- ``"bumble:<transport>"``: a Bumble host on that HCI transport
  (:mod:`gateway.transport.ble_bumble`), e.g. ``bumble:tcp-client:127.0.0.1:PORT``,
  the virtual street's radio started by ``streetedge sim``, or ``bumble:usb:0``, a
  USB controller driven without BlueZ. Bumble is imported only then.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bleak.backends.client import BaseBleakClient
    from bleak.backends.scanner import BaseBleakScanner

    from gateway.transport.ble_bumble import BumbleAdapter

__all__ = ["BleRadio", "adapter_problem"]

_BLUEZ_NAME = re.compile(r"^hci[0-9]{1,3}$")
_BUMBLE = "bumble:"


def adapter_problem(setting: str) -> str | None:
    """Why ``setting`` names no adapter, or None when it does (the configuration's check)."""
    if not setting or _BLUEZ_NAME.match(setting):
        return None
    if setting.startswith(_BUMBLE):
        return None if setting[len(_BUMBLE):] else "'bumble:' needs a transport: 'bumble:tcp-client:127.0.0.1:9001'"
    return f"expected a BlueZ adapter like 'hci0' or 'bumble:<transport>', got {setting!r}"


class BleRadio:
    """The bleak backends and arguments for ``setting`` (see the module); :meth:`close` when done."""

    def __init__(self, setting: str) -> None:
        self.scanner: type[BaseBleakScanner] | None = None
        """The scanner backend class; None for the platform's."""
        self.client: type[BaseBleakClient] | None = None
        """The client backend class; None for the platform's."""
        self.args: dict[str, Any] = {}
        """More keyword arguments for ``BleakScanner`` and ``BleakClient``."""
        self._bumble: BumbleAdapter | None = None
        problem = adapter_problem(setting)
        if problem:
            raise ValueError(problem)
        if setting.startswith(_BUMBLE):
            from gateway.transport.ble_bumble import bumble_backends

            self._bumble, self.scanner, self.client = bumble_backends(setting)
        elif setting:
            self.args = {"bluez": {"adapter": setting}}

    async def close(self) -> None:
        """Let go of a Bumble host's transport (nothing to do for BlueZ)."""
        if self._bumble is not None:
            await self._bumble.close()
