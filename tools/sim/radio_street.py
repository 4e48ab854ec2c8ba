"""The BLE side of the virtual street: firmware nodes on a virtual radio that a gateway in another process reaches.

Some units of a :class:`~tools.sim.street.VirtualStreet` are BLE nodes: the
real meter or environment firmware with a ``ble.json`` (its key and advert
interval) and, in its ``sim.json``, the radio host's port and its BLE address.
:class:`RadioStreet` runs, in the caller's event loop, the virtual radio with
the radio host the nodes reach (:mod:`tools.sim.radio_host`) and an HCI port
for a gateway (:mod:`tools.sim.radio_hci`), so ``streetedge run`` in another
process hears the nodes' adverts and writes to their GATT service through its
``[ble] adapter``. Its :meth:`~RadioStreet.manifest` joins the street's
manifest as ``"ble"``::

    {"adapter": "bumble:tcp-client:127.0.0.1:PORT",
     "nodes": [{"id": "pit-9", "unit": 9, "role": "meter", "address": "D0:5E:00:00:01:09",
                "key": "<32 hex digits>", "interval": 1.0}]}

BLE nodes still serve Modbus on the bus (the firmware does both) unless their
``config.json`` says ``"bus": false`` (a battery node); a gateway
configuration written from the manifest hears them on the radio only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from tools.sim.radio import VirtualRadio
from tools.sim.radio_hci import HciPort, adapter_setting
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

if TYPE_CHECKING:
    from gateway.service.config_ble import BleNodeConfig
    from gateway.transport.ble_client import GattSender

__all__ = ["RadioStreet", "RadioThread", "ble_node_id", "run_street"]

_T = TypeVar("_T")

_ID_PREFIX = {"meter": "pit", "env": "pole"}


def ble_node_id(role: str, unit: int) -> str:
    """The gateway's id of the BLE node of ``role`` on ``unit`` (``pit-9``, ``pole-11``)."""
    return f"{_ID_PREFIX[role]}-{unit}"


class RadioStreet:
    """BLE nodes of ``street``: ``units`` maps unit to role (``meter`` or ``env``).

    Args:
        interval_ms: the nodes' advert interval.
        loss: share of adverts the radio loses (seeded by ``seed``).
        node_settings: more ``ble.json`` settings of every node (e.g. ``{"alarm_repeat_ms": 2000}``).
    """

    def __init__(self, street: VirtualStreet, units: dict[int, str], *, interval_ms: int = 1000, loss: float = 0.0,
                 seed: int = 0, node_settings: dict[str, Any] | None = None) -> None:
        unknown = {u: r for u, r in units.items() if r not in _ID_PREFIX}
        if unknown:
            raise ValueError(f"BLE nodes are meters or env nodes, not {unknown}")
        self.street = street
        self.units = dict(units)
        self.interval_ms = interval_ms
        self.node_settings = dict(node_settings or {})
        self.radio = VirtualRadio(loss=loss, seed=seed)
        self.host = RadioHost(self.radio)
        self.hci = HciPort(self.radio)
        self.hci_port = 0

    def nodes(self) -> list[dict[str, Any]]:
        """Each BLE node: id, unit, role, address, key (hex), interval (s)."""
        return [{"id": ble_node_id(role, unit), "unit": unit, "role": role,
                 "address": f"D0:5E:00:00:01:{unit:02X}", "key": bytes([unit] * 16).hex(),
                 "interval": self.interval_ms / 1000} for unit, role in sorted(self.units.items())]

    async def start(self) -> None:
        """Start the radio host and the HCI port, and wire the nodes to them (before the street starts)."""
        host_port = await self.host.start()
        self.hci_port = await self.hci.start()
        for node in self.nodes():
            flash = self.street.node(node["unit"]).flash
            flash.mkdir(parents=True, exist_ok=True)
            settings = {"key": node["key"], "interval_ms": self.interval_ms, **self.node_settings}
            (flash / "ble.json").write_text(json.dumps(settings))
            self.street.hardware[node["unit"]] = {"radio": f"127.0.0.1:{host_port}", "ble_address": node["address"]}

    def manifest(self) -> dict[str, Any]:
        """The street manifest's ``"ble"`` part: the gateway's adapter setting and the nodes."""
        return {"adapter": adapter_setting(self.hci_port), "nodes": self.nodes()}

    async def stop(self) -> None:
        """Stop the HCI port and the radio host (the nodes' processes are the street's)."""
        await self.hci.stop()
        await self.host.stop()


async def run_street(street: VirtualStreet, ble_units: dict[int, str], started: Callable[[dict[str, Any]], None],
                     *, interval_ms: int = 1000) -> None:
    """Start ``street`` (and its BLE nodes on a radio here), hand its manifest to ``started``, run until cancelled.

    With BLE nodes the manifest (also ``manifest.json``) has the ``"ble"`` part of :meth:`RadioStreet.manifest`.
    """
    radio = RadioStreet(street, ble_units, interval_ms=interval_ms) if ble_units else None
    try:
        if radio is not None:
            await radio.start()
        manifest = await asyncio.to_thread(street.start)
        if radio is not None:
            manifest["ble"] = radio.manifest()
            (street.workdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        started(manifest)
        await asyncio.Event().wait()
    finally:
        if radio is not None:
            await radio.stop()


class RadioThread:
    """A :class:`RadioStreet` served from a thread of its own (for synchronous callers: the node bench), with
    a gateway-side GATT read of each node's first holding registers every ``gatt_every`` seconds, so that the
    nodes' GATT service works while they are measured (None: no such reads; :meth:`call` runs the caller's
    own GATT work). Use as a context manager around the street's run.
    """

    def __init__(self, street: VirtualStreet, units: dict[int, str], *, interval_ms: int = 1000,
                 gatt_every: float | None = 5.0) -> None:
        self.radio = RadioStreet(street, units, interval_ms=interval_ms)
        self.gatt_every = gatt_every
        self.gatt_answered = 0
        """GATT reads the nodes answered."""
        self.gatt_failed = 0
        """GATT reads that failed (a node not up yet, a lost connection)."""
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="radio", daemon=True)
        self._error: BaseException | None = None
        self._sender: GattSender | None = None
        self._nodes: list[BleNodeConfig] = []

    def call(self, work: Callable[[GattSender, list[BleNodeConfig]], Awaitable[_T]]) -> _T:
        """Run ``work(sender, nodes)`` on the radio's event loop (a gateway's GATT sender, the BLE nodes'
        configurations) and return its result: for a caller that drives the nodes over GATT itself."""
        sender = self._sender
        if sender is None:
            raise RuntimeError("the radio is not running")

        async def run() -> _T:
            return await work(sender, self._nodes)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result()

    def __enter__(self) -> RadioThread:
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *_exc: object) -> None:
        stop = self._stop
        if stop is not None:
            self._loop.call_soon_threadsafe(stop.set)
        self._thread.join()

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())
        self._loop.close()

    async def _main(self) -> None:
        from gateway.contracts import BLE_GATT_OP_READ
        from gateway.service.config_ble import BleNodeConfig
        from gateway.transport.ble_client import GattError, GattSender
        from gateway.transport.ble_window import ReplayWindows
        from tools.sim.bleak_bumble import client_backend

        self._stop = asyncio.Event()
        try:
            await self.radio.start()
        except BaseException as exc:  # handed to the caller's thread
            self._error = exc
            self._started.set()
            return
        windows = ReplayWindows(":memory:")
        sender = GattSender(windows, backend=client_backend(self.radio.radio), retries=0)
        nodes = [BleNodeConfig(id=n["id"], address=n["address"], key=n["key"], role=n["role"])
                 for n in self.radio.nodes()]
        self._sender, self._nodes = sender, nodes
        self._started.set()
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.gatt_every)
                    break
                for node in nodes:
                    try:
                        await sender.send(node, BLE_GATT_OP_READ, bytes((0, 0, 10)))
                        self.gatt_answered += 1
                    except GattError:
                        self.gatt_failed += 1
        finally:
            windows.close()
            await self.radio.stop()
