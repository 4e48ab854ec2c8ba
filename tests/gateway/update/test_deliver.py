"""Updates over the bus against the real lamp firmware: switch and confirm, refusals, rollback."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from gateway.update.deliver import UpdateRefused, UpdateRolledBack, deliver, node_status
from gateway.update.package import UpdatePackage, make_package
from protocols.update import BAD_HASH, BAD_MAC, RESULTS
from tests.gateway.update.update_kit import KEY, Supervisor, bus_for, keyed_street, package, running_image, variant
from tools.sim.code_slots import read_state


class _Corrupted(UpdatePackage):
    """A package whose header names the image as signed while its bytes differ."""

    @property
    def digest(self) -> bytes:
        good = bytearray(self.image)
        good[len(good) // 2] ^= 0x01
        return hashlib.sha256(good).digest()


def test_an_image_is_delivered_switched_to_and_confirmed(tmp_path: Path) -> None:
    """The node ends on slot 1 with the new image's bytes, confirmed, and answering."""
    with keyed_street(tmp_path / "street") as street, Supervisor(street):
        old = running_image(street)
        new = variant(street, tmp_path)
        phases: list[str] = []

        async def run() -> dict[str, object]:
            bus = bus_for(street)
            try:
                return await deliver(bus, 1, package(new), progress=lambda p, d, t: phases.append(p))
            finally:
                bus.close()

        status = asyncio.run(run())
        assert status["active"] == 1 and not status["trial"]
        assert running_image(street) == hashlib.sha256(new).hexdigest() != old
        assert phases[-1] == "confirmed" and "switching" in phases
        assert read_state(street.node(1).flash) == {"active": 1, "trial": False, "tries": 0, "rolled_back": 0}


@pytest.mark.parametrize("fault", ["unsigned", "corrupted", "other role"])
def test_a_bad_image_is_refused_and_the_old_one_keeps_running(tmp_path: Path, fault: str) -> None:
    """A wrong MAC, a corrupted byte or an image signed for another role: refused, slot 0 still active."""
    with keyed_street(tmp_path / "street") as street, Supervisor(street) as supervisor:
        old = running_image(street)
        new = variant(street, tmp_path)
        good = package(new)
        if fault == "unsigned":
            bad = package(new, key=b"not the node's key")
        elif fault == "corrupted":  # a byte changed after signing: the header still names the good image
            image = bytearray(new)
            image[len(image) // 2] ^= 0x01
            bad = _Corrupted(role="lamp", board="sim", image=bytes(image), health_s=2, tag=good.tag)
        else:
            bad = make_package(new, key=KEY, role="meter", board="sim", health_s=2)

        async def run() -> dict[str, object]:
            bus = bus_for(street)
            try:
                with pytest.raises(UpdateRefused) as refused:
                    await deliver(bus, 1, bad)
                assert refused.value.reason == (RESULTS[BAD_HASH] if fault == "corrupted" else RESULTS[BAD_MAC])
                return await node_status(bus, 1)
            finally:
                bus.close()

        status = asyncio.run(run())
        assert status["active"] == 0 and not status["trial"]
        assert running_image(street) == old
        assert supervisor.boots == 0  # refused without a reset


def test_an_image_that_cannot_boot_is_rolled_back(tmp_path: Path) -> None:
    """A signed image whose code fails at boot: after its trial boots the node is back on its old image."""
    with keyed_street(tmp_path / "street") as street, Supervisor(street) as supervisor:
        old = running_image(street)
        broken = variant(street, tmp_path, tag="broken", broken=True)

        async def run() -> dict[str, object]:
            bus = bus_for(street)
            try:
                with pytest.raises(UpdateRolledBack):
                    await deliver(bus, 1, package(broken))
                return await node_status(bus, 1)
            finally:
                bus.close()

        status = asyncio.run(run())
        assert status["active"] == 0 and status["rolled_back"] == 1 and not status["trial"]
        assert running_image(street) == old
        assert supervisor.boots >= 4  # the commit's reset, three failed trial boots, the way back
