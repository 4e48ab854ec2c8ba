"""A roll-out's journal and its resumption against the real lamp firmware: what is stored, what is sent again.

One lamp for the module (its street's start is most of a test's time). Each roll-out
writes its steps into a real roll-out store and records its node events as the
daemon's outbox would get them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.update.deliver import FileRecordBus
from gateway.update.package import UpdatePackage
from gateway.update.rollout import NodeState, Outcome, Target, roll_out
from gateway.update.rollout_events import ROLLOUT_SEQ_BASE, RolloutStep
from gateway.update.rollout_journal import RolloutJournal
from gateway.update.rollout_store import RolloutStore
from protocols.update import FILE_IMAGE
from tests.gateway.update.update_kit import Supervisor, bus_for, keyed_street, package, running_image, variant
from tools.sim.street import VirtualStreet

LAMP = Target("lamp-1", "bus0", 1)


class Spy:
    """The real bus, with a note of every image chunk written through it."""

    def __init__(self, bus: Any) -> None:
        self.bus = bus
        self.chunks = 0

    async def file_record(self, unit: int, file: int, record: int, *, data: bytes = b"", count: int = 0,
                          priority: int = 20) -> bytes:
        if file == FILE_IMAGE and data:
            self.chunks += 1
        result: bytes = await self.bus.file_record(unit, file, record, data=data, count=count, priority=priority)
        return result


class Bench:
    """The lamp, a roll-out store and the node events recorded."""

    def __init__(self, street: VirtualStreet, work: Path) -> None:
        self.street, self.work = street, work
        self.store = RolloutStore(work / "rollouts.sqlite", now=0.0)
        self.events: list[RolloutStep] = []

    async def record(self, node: str, steps: Sequence[RolloutStep]) -> None:
        assert node == LAMP.node
        self.events += steps

    async def roll(self, bus: FileRecordBus, cid: str, new: UpdatePackage, number: int,
                   states: dict[str, NodeState], cancel: asyncio.Event | None = None) -> Outcome:
        def report(event: dict[str, Any]) -> None:
            if cancel is not None and event["phase"] == "switching":
                cancel.set()  # the operator's cancel lands just as the node got its commit

        with concurrent.futures.ThreadPoolExecutor(1) as writer:
            journal = RolloutJournal(self.store, number, cid, new.digest.hex(), self.record, writer, lambda: 1.0)
            return await roll_out(cid, new, [LAMP], {"bus0": bus}, canaries=1, journal=journal, states=states,
                                  report=report, cancel=cancel)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    work = tmp_path_factory.mktemp("resume")
    with keyed_street(work / "street") as street, Supervisor(street):
        bench = Bench(street, work)
        yield bench
        bench.store.close()


def test_a_node_that_was_committing_is_watched_not_sent_again(bench: Bench) -> None:
    """Stopped just after the commit, the node keeps its ``committing`` state; resumed from the store, the
    roll-out waits for the node's confirmation and writes no chunk."""
    new = package(variant(bench.street, bench.work, tag="v2"))
    number = bench.store.begin("c-1", new.digest.hex(), [LAMP], 1, True, 0.0)

    async def run() -> tuple[Outcome, Outcome, int]:
        bus = bus_for(bench.street)
        try:
            stopped = await bench.roll(bus, "c-1", new, number, {}, cancel=asyncio.Event())
            stored = bench.store.get("c-1")
            assert stored is not None
            spy = Spy(bus)
            return stopped, await bench.roll(spy, "c-1", new, number, stored.nodes), spy.chunks
        finally:
            bus.close()

    stopped, resumed, chunks = asyncio.run(run())
    assert stopped.cancelled and stopped.switching == [LAMP.node] and stopped.skipped == [] and not stopped.ok
    assert resumed.confirmed == [LAMP.node] and resumed.ok
    assert chunks == 0  # checked, not sent again
    assert running_image(bench.street) == hashlib.sha256(new.image).hexdigest()
    stored = bench.store.get("c-1")
    assert stored is not None and stored.nodes[LAMP.node].state == "confirmed"
    assert [e.step for e in bench.events] == ["started", "transferred", "committed", "confirmed"]
    assert bench.events[-1].seq == ROLLOUT_SEQ_BASE + number * 8 + 3


@pytest.mark.slow  # ~5 s: three failed trial boots; the step's encoding is checked in test_rollout_events.py
def test_a_roll_back_is_stored_and_announced_with_its_reason(bench: Bench) -> None:
    """An image that cannot boot: every step of the node, then ``rolled_back`` saying why."""
    bench.events.clear()
    old = running_image(bench.street)
    broken = package(variant(bench.street, bench.work, tag="broken", broken=True))
    number = bench.store.begin("c-2", broken.digest.hex(), [LAMP], 1, True, 0.0)

    async def run() -> Outcome:
        bus = bus_for(bench.street)
        try:
            return await bench.roll(bus, "c-2", broken, number, {})
        finally:
            bus.close()

    outcome = asyncio.run(run())
    assert outcome.failed == LAMP.node and "rolled back" in outcome.reason and not outcome.ok
    assert running_image(bench.street) == old
    assert [e.step for e in bench.events] == ["started", "transferred", "committed", "rolled_back"]
    assert "rolled back to its old one" in bench.events[-1].detail
    assert all(e.command == "c-2" and e.package == broken.digest.hex() for e in bench.events)
    stored = bench.store.get("c-2")
    assert stored is not None
    assert stored.nodes[LAMP.node].state == "rolled_back" and stored.nodes[LAMP.node].slot is not None
