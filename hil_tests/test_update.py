"""Updates over the bus, provisioning's slots and rollback, on the virtual street or a real bench.

On the virtual street these run on a line of their own (two lamps provisioned
with a key, powered up again whenever they reset, as a chip reboots). On a real
bench (``--bench FILE``) the file names the line and nodes as for the other
scenarios, plus ``"update_key"`` (the key file the nodes were provisioned with)
and ``"update_images"``: ``{"new": ROMFS file, "broken": ROMFS file}`` built for
the bench's boards (``streetedge image build``; "broken": an image whose code
fails at boot); the gateway must not be running on that line meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.service.config import BusConfig
from gateway.transport.modbus_rtu import ModbusBus
from gateway.update.deliver import UpdateRefused, UpdateRolledBack, deliver, node_status
from gateway.update.package import UpdatePackage, make_package
from hil_tests.update_kit import PowerUp, variant_image
from tools.sim.street import VirtualStreet

KEY = b"hil update key"


@dataclass
class UpdateBench:
    """A line to update nodes on: its device and rate, its units, the nodes' key and the images."""

    device: str
    baud: int
    parity: str
    units: list[int]
    key: bytes
    role: str
    new: bytes
    broken: bytes

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)

    def bus(self) -> ModbusBus:
        return ModbusBus(BusConfig(name="bus0", device=self.device, baud=self.baud, parity=self.parity,  # type: ignore[arg-type]
                                   timeout=0.5, retries=1))

    def package(self, image: bytes, key: bytes | None = None) -> UpdatePackage:
        return make_package(image, key=key or self.key, role=self.role, board="bench", health_s=2)


@pytest.fixture(scope="module")
def update_bench(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpdateBench]:
    path = request.config.getoption("--bench")
    if path:
        spec = json.loads(Path(path).read_text())
        bus = spec["buses"][0]
        images = {k: Path(v).read_bytes() for k, v in spec["update_images"].items()}
        yield UpdateBench(bus["device"], bus["baud"], bus.get("parity", "E"),
                          [n["unit"] for n in spec["nodes"] if n["bus"] == bus["name"]][:2],
                          Path(spec["update_key"]).read_bytes(), spec["nodes"][0]["role"],
                          images["new"], images["broken"])
        return
    work = tmp_path_factory.mktemp("update")
    street = VirtualStreet(work / "street", nodes=2, baud=115200)
    for node in street.nodes.values():
        node.flash.mkdir(parents=True)
        (node.flash / "node.key").write_bytes(KEY)
    with street:
        street.start()
        new, broken = variant_image(street, work, "new"), variant_image(street, work, "broken", broken=True)
        with PowerUp(street):
            yield UpdateBench(street.master_device, 115200, "N", [1, 2], KEY, "lamp", new, broken)


def test_provisioned_nodes_run_from_their_code_slot(update_bench: UpdateBench) -> None:
    """Every node answers the update status with code slots, no trial running."""
    async def run() -> list[dict[str, Any]]:
        bus = update_bench.bus()
        try:
            return [await node_status(bus, unit) for unit in update_bench.units]
        finally:
            bus.close()

    for status in update_bench.run(run()):
        assert status["has_slots"] == 1 and status["trial"] == 0


def test_an_update_is_taken_and_confirmed_and_a_bad_one_refused(update_bench: UpdateBench) -> None:
    """A signed image is confirmed on the first node; the same image with another key is refused by the second."""
    async def run() -> tuple[dict[str, Any], str]:
        bus = update_bench.bus()
        try:
            before = await node_status(bus, update_bench.units[0])
            done = await deliver(bus, update_bench.units[0], update_bench.package(update_bench.new))
            assert done["active"] != before["active"] and done["trial"] == 0
            with pytest.raises(UpdateRefused) as refused:
                await deliver(bus, update_bench.units[1], update_bench.package(update_bench.new, b"another key"))
            return await node_status(bus, update_bench.units[1]), refused.value.reason
        finally:
            bus.close()

    status, reason = update_bench.run(run())
    assert "MAC" in reason and status["trial"] == 0


def test_an_image_that_cannot_boot_is_rolled_back(update_bench: UpdateBench) -> None:
    """The node tries the image, fails to boot it, and is back on its previous one by itself."""
    async def run() -> tuple[dict[str, Any], dict[str, Any]]:
        bus = update_bench.bus()
        try:
            before = await node_status(bus, update_bench.units[1])
            with pytest.raises(UpdateRolledBack):
                await deliver(bus, update_bench.units[1], update_bench.package(update_bench.broken))
            return before, await node_status(bus, update_bench.units[1])
        finally:
            bus.close()

    before, after = update_bench.run(run())
    assert after["active"] == before["active"] and after["rolled_back"] == before["rolled_back"] + 1
