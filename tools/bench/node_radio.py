"""The virtual radio of ``streetedge bench node``'s BLE roles (``ble-meter``, ``ble-env``).

A BLE role is the base role with its beacon and GATT service running: the node
gets ``ble.json`` (bind key, advert interval) and its ``sim.json`` wires it to
a radio host (:class:`tools.sim.radio_host.RadioHost`, Bumble on the
:class:`tools.sim.radio.VirtualRadio`), which runs on an event loop of its own
thread while the bench polls the node over its bus as for any role. Nothing
listens to the adverts: the figure is the node's heap with its radio at work.
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost

BLE_PREFIX = "ble-"
_KEY = "000102030405060708090a0b0c0d0e0f"  # the bench's bind key (the adverts are sealed with it)
_BEACON = {"key": _KEY, "interval_ms": 300, "burst_ms": 150, "alarm_repeat_ms": 600, "alarm_timeout_ms": 3000}
_ADDRESS = "D0:5E:00:00:00:01"


def base_role(role: str) -> str:
    """The node role of a bench role (``ble-meter`` -> ``meter``)."""
    return role.removeprefix(BLE_PREFIX)


def is_ble(role: str) -> bool:
    """True for a BLE role of the bench."""
    return role.startswith(BLE_PREFIX)


class RadioThread:
    """A radio host on a thread of its own; entering starts it and gives its address (``host:port``)."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bench-radio", daemon=True)
        self._host = RadioHost(VirtualRadio(loss=0.0, seed=1))

    def __enter__(self) -> str:
        self._thread.start()
        port = asyncio.run_coroutine_threadsafe(self._host.start(), self._loop).result(timeout=30)
        return f"127.0.0.1:{port}"

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        try:
            asyncio.run_coroutine_threadsafe(self._host.stop(), self._loop).result(timeout=30)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()

    @property
    def adverts(self) -> int:
        """Advertising-data changes the radio saw (every sealed advert is one)."""
        return sum(self._host.adverts.values())


def wire(flash: Path, hardware: dict[str, Any], radio: str) -> None:
    """Give the node in ``flash`` its beacon settings, and its wiring (``hardware``: its ``sim.json`` additions)."""
    (flash / "ble.json").write_text(json.dumps(_BEACON))
    hardware.update({"radio": radio, "ble_address": _ADDRESS})
