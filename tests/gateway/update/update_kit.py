"""A lamp on the virtual street with a provisioned key, a supervisor that powers it up again, and images."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.service.config import BusConfig
from gateway.transport.modbus_rtu import ModbusBus
from gateway.update.package import UpdatePackage, make_package
from tools.sim.code_slots import read_state, slot_image
from tools.sim.image_variant import variant_image
from tools.sim.street import VirtualStreet

KEY = b"streetedge test node key 0001"
BAUD = 115200


class Supervisor:
    """Restarts the node whenever its process ends (a chip resets and boots again), until stopped."""

    def __init__(self, street: VirtualStreet, unit: int = 1) -> None:
        self.street = street
        self.unit = unit
        self.boots = 0
        self.paused = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            node = self.street.node(self.unit)
            if not self.paused.is_set() and not node.alive():
                self.street.start_node(self.unit, wait=False)
                self.boots += 1

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextmanager
def keyed_street(workdir: Path) -> Iterator[VirtualStreet]:
    """One lamp at 115200 bit/s with ``KEY`` provisioned, running from its ROMFS slot 0."""
    street = VirtualStreet(workdir, nodes=1, baud=BAUD)
    flash = street.node(1).flash
    flash.mkdir(parents=True)
    (flash / "node.key").write_bytes(KEY)
    with street:
        street.start()
        yield street


def bus_for(street: VirtualStreet) -> ModbusBus:
    """The gateway's bus on the street's master end."""
    return ModbusBus(BusConfig(name="bus0", device=street.master_device, baud=BAUD, parity="N", timeout=0.5,
                               retries=1))


def variant(street: VirtualStreet, work: Path, *, tag: str = "v2", broken: bool = False) -> bytes:
    """A new ROMFS image of the street's lamp image: the same code with a marker file, or one that cannot boot."""
    return variant_image(street, work, tag, broken=broken)


def package(image: bytes, *, key: bytes = KEY, health_s: int = 2) -> UpdatePackage:
    """``image`` signed for lamps with ``key``."""
    return make_package(image, key=key, role="lamp", board="sim", health_s=health_s)


def running_image(street: VirtualStreet, unit: int = 1) -> str:
    """SHA-256 of the image in the node's active slot."""
    flash = street.node(unit).flash
    state = read_state(flash)
    assert state is not None
    return hashlib.sha256(slot_image(flash, int(state["active"]))).hexdigest()
