"""Fleet roll-out against real lamps: canary first, then the rest; the first failure stops it."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from gateway.update.deliver import deliver_bus
from gateway.update.rollout import Target, roll_out
from protocols.update import CHUNK
from tests.gateway.update.update_kit import BAUD, KEY, Supervisor, bus_for, package, running_image, variant
from tools.sim.street import VirtualStreet


def test_a_failure_after_the_canary_stops_the_roll_out(tmp_path: Path) -> None:
    """Lamp 1 (canary) is updated; lamp 2 has no key and refuses; lamp 3 is left alone; progress says so."""
    street = VirtualStreet(tmp_path / "street", nodes=3, baud=BAUD)
    for unit in (1, 3):
        flash = street.node(unit).flash
        flash.mkdir(parents=True)
        (flash / "node.key").write_bytes(KEY)
    events: list[dict[str, Any]] = []
    with street:
        street.start()
        with Supervisor(street, 1), Supervisor(street, 2), Supervisor(street, 3):
            new = package(variant(street, tmp_path))
            targets = [Target(f"lamp-{u}", "bus0", u) for u in (1, 2, 3)]

            async def run() -> Any:
                bus = bus_for(street)
                try:
                    return await roll_out("c-7", new, targets, {"bus0": bus}, canaries=1, report=events.append)
                finally:
                    bus.close()

            outcome = asyncio.run(run())
    assert outcome.confirmed == ["lamp-1"]
    assert outcome.failed == "lamp-2" and "no key provisioned" in outcome.reason
    assert outcome.skipped == ["lamp-3"] and not outcome.ok
    phases = [(e["phase"], e["node"]) for e in events]
    assert phases[0] == ("canary", None)
    assert ("confirmed", "lamp-1") in phases and ("rest", None) in phases
    assert phases.index(("confirmed", "lamp-1")) < phases.index(("rest", None))
    assert phases[-2:] == [("failed", "lamp-2"), ("stopped", "lamp-2")]
    assert not any(node == "lamp-3" for _, node in phases)
    assert all(e["command"] == "c-7" for e in events)
    sending = [e for e in events if e["phase"] == "sending" and e["node"] == "lamp-1"]
    assert sending and sending[-1]["done"] == sending[-1]["total"] == len(new.image)


@pytest.mark.slow  # ~40 s: each broadcast chunk is followed by the spec's 100 ms turnaround
def test_a_whole_line_is_updated_by_broadcast_and_finished_node_by_node(tmp_path: Path) -> None:
    """Three lamps take the image from broadcast chunks; each is committed and confirmed on its own."""
    street = VirtualStreet(tmp_path / "street", nodes=3, baud=BAUD)
    for unit in (1, 2, 3):
        flash = street.node(unit).flash
        flash.mkdir(parents=True)
        (flash / "node.key").write_bytes(KEY)
    with street:
        street.start()
        with Supervisor(street, 1), Supervisor(street, 2), Supervisor(street, 3):
            new = package(variant(street, tmp_path))

            async def run() -> Any:
                bus = bus_for(street)
                try:
                    return await deliver_bus(bus, [1, 2, 3], new), bus.stats
                finally:
                    bus.close()

            results, stats = asyncio.run(run())
        assert all(isinstance(r, dict) and r["active"] == 1 and not r["trial"] for r in results.values()), results
        for unit in (1, 2, 3):
            assert running_image(street, unit) == hashlib.sha256(new.image).hexdigest()
    chunks = -(-len(new.image) // CHUNK)
    assert stats.broadcasts >= chunks  # the image went out once for all three, not three times
    assert stats.requests < chunks  # unicast: begins, statuses, commits, confirmations, a few repeats at most
