"""Power cuts at random moments of updates: the node always boots, on a whole image, old or new.

A lamp is updated back and forth between two signed images; while each
delivery runs, its power is cut (SIGKILL) at a random moment: while chunks
arrive, at the commit, while it resets, during its trial boots. After every
cut it boots again (the supervisor powers it up) and must answer on its bus
running one of the known images, whole (the active slot's bytes hash to one
of them); a delivery cut short resumes or starts again. The last update runs
to its end and is confirmed. 1 cut by default; ``-m slow`` runs 100.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import threading
from pathlib import Path

import pytest

from gateway.transport.bus import BusError
from gateway.update.deliver import UpdateError, deliver, node_status
from tests.gateway.update.update_kit import Supervisor, bus_for, keyed_street, package, running_image, variant
from tools.sim.street import VirtualStreet


def _deliver_in_thread(street: VirtualStreet, image: bytes, outcome: list[object]) -> threading.Thread:
    async def run() -> None:
        bus = bus_for(street)
        try:
            outcome.append(await deliver(bus, 1, package(image), back_within=30))
        except (UpdateError, BusError) as exc:
            outcome.append(exc)
        finally:
            bus.close()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    return thread


def _answers(street: VirtualStreet) -> dict[str, object]:
    async def run() -> dict[str, object]:
        bus = bus_for(street)
        try:
            for _ in range(60):
                try:
                    return await node_status(bus, 1)
                except BusError:
                    await asyncio.sleep(0.25)
            raise AssertionError("the node does not answer after a power cut")
        finally:
            bus.close()

    return asyncio.run(run())


def power_cuts(tmp_path: Path, cuts: int, seed: int) -> dict[str, int]:
    """Run ``cuts`` cut updates and a final whole one; assert the invariants; the outcome counts."""
    rng = random.Random(seed)
    counts = {"confirmed": 0, "failed": 0, "rolled_back": 0}
    with keyed_street(tmp_path / "street") as street, Supervisor(street) as supervisor:
        images = [variant(street, tmp_path, tag="a"), variant(street, tmp_path, tag="b")]
        known = {running_image(street)} | {hashlib.sha256(i).hexdigest() for i in images}
        for cut in range(cuts + 1):
            target = images[cut % 2] if running_image(street) != hashlib.sha256(images[cut % 2]).hexdigest() \
                else images[(cut + 1) % 2]
            outcome: list[object] = []
            thread = _deliver_in_thread(street, target, outcome)
            if cut < cuts:
                thread.join(rng.uniform(0.0, 5.0))
                supervisor.paused.set()
                street.kill_node(1)
                supervisor.paused.clear()
            thread.join(60)
            assert not thread.is_alive(), "a delivery hung"
            status = _answers(street)
            assert running_image(street) in known, "the node runs an image that is not whole"
            assert status["has_slots"] == 1
            if isinstance(outcome[0], dict):
                counts["confirmed"] += 1
            else:
                counts["failed"] += 1
            counts["rolled_back"] = int(status["rolled_back"])
        assert isinstance(outcome[0], dict), f"the last update, uncut, failed: {outcome[0]}"
        assert running_image(street) == hashlib.sha256(target).hexdigest()
    return counts


def test_power_cuts_during_updates_leave_a_node_that_boots_a_whole_image(tmp_path: Path) -> None:
    power_cuts(tmp_path, cuts=1, seed=11)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_a_hundred_power_cuts_during_updates(tmp_path: Path) -> None:
    counts = power_cuts(tmp_path, cuts=100, seed=2026)
    print(f"100 cuts: {counts}")
