"""Updates over the bus against the real lamp firmware: switch and confirm, refusals, rollback.

The tests share one lamp (one street per module: its start is most of a test's
time) and each compares the node with itself before.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.service.config import BusConfig
from gateway.transport.modbus_rtu import ModbusBus
from gateway.transport.priority_lock import ROUTINE
from gateway.update.deliver import UpdateRefused, UpdateRolledBack, deliver, node_status
from gateway.update.package import UpdatePackage, make_package
from protocols.update import BAD_HASH, BAD_MAC, FILE_CONTROL, OP_COMMIT, RESULTS
from tests.gateway.update.update_kit import KEY, Supervisor, bus_for, keyed_street, package, running_image, variant
from tools.sim.code_slots import has_partitions, read_state
from tools.sim.street import VirtualStreet


class _Corrupted(UpdatePackage):
    """A package whose header names the image as signed while its bytes differ."""

    @property
    def digest(self) -> bytes:
        good = bytearray(self.image)
        good[len(good) // 2] ^= 0x01
        return hashlib.sha256(good).digest()


class _Logged(ModbusBus):
    """The gateway's bus, noting each file-record call: (when, file, first two bytes written, words read)."""

    def __init__(self, config: BusConfig) -> None:
        super().__init__(config)
        self.log: list[tuple[float, int, bytes, int]] = []

    async def file_record(self, unit: int, file: int, record: int, *, data: bytes = b"", count: int = 0,
                          priority: int = ROUTINE) -> bytes:
        self.log.append((time.monotonic(), file, bytes(data[:2]), count))
        return await super().file_record(unit, file, record, data=data, count=count, priority=priority)


class Lamp:
    """The shared lamp, its supervisor and a scratch folder."""

    def __init__(self, street: VirtualStreet, supervisor: Supervisor, work: Path) -> None:
        self.street, self.supervisor, self.work = street, supervisor, work

    def call(self, step: Any) -> Any:
        async def run() -> Any:
            bus = bus_for(self.street)
            try:
                return await step(bus)
            finally:
                bus.close()

        return asyncio.run(run())


@pytest.fixture(scope="module")
def lamp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lamp]:
    work = tmp_path_factory.mktemp("deliver")
    with keyed_street(work / "street") as street, Supervisor(street) as supervisor:
        yield Lamp(street, supervisor, work)


def test_bad_images_are_refused_and_the_old_one_keeps_running(lamp: Lamp) -> None:
    """A wrong MAC, a corrupted byte, an image signed for another role: refused with the reason, no reset."""
    old = running_image(lamp.street)
    new = variant(lamp.street, lamp.work, tag="refused")
    good = package(new)
    image = bytearray(new)
    image[len(image) // 2] ^= 0x01
    cases = [
        (package(new, key=b"not the node's key"), RESULTS[BAD_MAC]),
        (_Corrupted(role="lamp", board="sim", image=bytes(image), health_s=2, tag=good.tag), RESULTS[BAD_HASH]),
        (make_package(new, key=KEY, role="meter", board="sim", health_s=2), RESULTS[BAD_MAC]),
    ]
    boots = lamp.supervisor.boots

    async def step(bus: Any) -> list[tuple[str, dict[str, Any]]]:
        seen = []
        for bad, _ in cases:
            with pytest.raises(UpdateRefused) as refused:
                await deliver(bus, 1, bad)
            seen.append((refused.value.reason, await node_status(bus, 1)))
        return seen

    before = read_state(lamp.street.node(1).flash)
    for (reason, status), (_, expected) in zip(lamp.call(step), cases, strict=True):
        assert reason == expected
        assert before is not None and status["active"] == before["active"] and not status["trial"]
    assert running_image(lamp.street) == old
    assert lamp.supervisor.boots == boots  # refused without a reset


def test_an_image_is_delivered_switched_to_and_confirmed(lamp: Lamp) -> None:
    """The node ends on its other slot with the new image's bytes, confirmed, and answering."""
    old = running_image(lamp.street)
    before = read_state(lamp.street.node(1).flash)
    assert before is not None
    new = variant(lamp.street, lamp.work, tag="v2")
    phases: list[str] = []
    signed = package(new)
    bus = _Logged(bus_for(lamp.street).config)
    try:
        status = asyncio.run(deliver(bus, 1, signed, progress=lambda p, d, t: phases.append(p)))
    finally:
        bus.close()
    assert status["active"] == 1 - before["active"] and not status["trial"]
    # The node cannot confirm within its health time: its status is not asked for before (a resetting
    # node's unanswered read would hold the line for the whole answer timeout).
    commit = next(t for t, file, head, _ in bus.log if file == FILE_CONTROL and head == bytes((0, OP_COMMIT)))
    first_read = next(t for t, file, _, count in bus.log if t > commit and count)
    assert first_read - commit >= signed.health_s
    assert running_image(lamp.street) == hashlib.sha256(new).hexdigest() != old
    assert phases[-1] == "confirmed" and "switching" in phases
    assert read_state(lamp.street.node(1).flash) == {"active": 1 - before["active"], "trial": False, "tries": 0,
                                                       "rolled_back": before.get("rolled_back", 0)}
    # staged in the virtual board's other ROM partition (NOR flash, as an ESP32's), not in a file
    flash = lamp.street.node(1).flash
    assert has_partitions(flash) and not list((flash / "rom").glob("slot*.img"))
    assert (flash / "rom" / f"part{1 - before['active']}.bin").read_bytes().startswith(new)


def test_an_image_that_cannot_boot_is_rolled_back(lamp: Lamp) -> None:
    """A signed image whose code fails at boot: after its trial boots the node is back on its old image."""
    old = running_image(lamp.street)
    broken = variant(lamp.street, lamp.work, tag="broken", broken=True)
    boots = lamp.supervisor.boots

    async def step(bus: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        before = await node_status(bus, 1)
        with pytest.raises(UpdateRolledBack):
            await deliver(bus, 1, package(broken))
        return before, await node_status(bus, 1)

    before, after = lamp.call(step)
    assert after["active"] == before["active"] and after["rolled_back"] == before["rolled_back"] + 1
    assert not after["trial"] and running_image(lamp.street) == old
    assert lamp.supervisor.boots - boots >= 4  # the commit's reset, three failed trial boots, the way back
