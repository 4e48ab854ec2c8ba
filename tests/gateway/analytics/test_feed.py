"""The gateway runs the detectors on its polls: a flag reaches the broker as a node event, in both profiles.

A pymodbus lamp on a pty, the real gateway, Mosquitto, and paho decoding the
event pack with cbor2 and RFC 8428's labels alone. The gateway's clock is the
test's: it jumps from night to noon to night, so two nights take a few polls.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest

from gateway.analytics.feed import AnalyticsFeed, baselines_path
from gateway.analytics.settings import AnalyticsConfig
from gateway.contracts import load_role
from gateway.service.config import NodeConfig
from gateway.service.daemon import Gateway

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC
LABELS = {-2: "bn", -3: "bt", 0: "n", 2: "v", 3: "vs", 4: "vb", 6: "t"}  # RFC 8428, table 4


def records(payload: bytes) -> list[dict[str, Any]]:
    """An event pack's records by label name, names without the base name."""
    return [{LABELS.get(k, str(k)): v for k, v in rec.items() if k != -2} for rec in cbor2.loads(payload)]


@pytest.mark.parametrize("profile", ["compact", "senml"])
def test_a_drifting_driver_is_flagged_upstream(profile: str, pty_pair: Any, sim: Any, subscriber: Any,
                                               mosquitto: Any, tmp_path: Path) -> None:
    gw_end, node_end = pty_pair
    outbox = tmp_path / "outbox.db"
    extra = (f'[delivery]\nprofile = "{profile}"\noutbox = "{outbox}"\n'
             "[analytics.lamp.driver]\nlearn_nights = 1\n")
    config = sim.config(gw_end, mosquitto.url, interval=0.05, extra=extra)
    now = [T0 + 20 * 3600]
    gateway = Gateway(config, clock=lambda: now[0])
    lamp = sim.lamp(1, power=60.0, level_actual=100, level_target=100, power_factor=0.95)

    async def at(hour: float, power: float) -> None:
        """The lamp lit at 100 % drawing ``power`` (0: off, at noon), then the clock at ``hour`` after T0.

        The lamp changes first and two polls pass before the clock moves, so that a poll under way when the
        clock moves cannot carry the previous phase's readings into the next.
        """
        level = 100 if power else 0
        lamp.values.update(power=power, level_actual=level, level_target=level)
        await polls(2)
        now[0] = T0 + hour * 3600

    async def polls(n: int) -> None:
        """Let ``n`` more polls happen at the clock's time."""
        target = gateway.stats.nodes["lamp-1"].polls + n
        deadline = time.monotonic() + 30
        while gateway.stats.nodes["lamp-1"].polls < target:
            assert time.monotonic() < deadline, "the gateway stopped polling"
            await asyncio.sleep(0.01)

    async def main() -> list[dict[str, Any]]:
        async with sim.serve(node_end, [lamp]):
            sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.event("lamp-1"))
            task = asyncio.create_task(gateway.run())
            try:
                await polls(4)  # a night at 100 %: the baseline
                await at(36, 0.0)
                await polls(2)  # noon, dark: the night closes, learned
                await at(44, 66.0)  # 10 % more for the same light
                await polls(4)
                await at(60, 0.0)
                await polls(2)  # noon: judged
                msg = await sub.wait(lambda m: any(r.get("vs") == "lamp.driver_drift" for r in records(m.payload)))
                return records(msg.payload)
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 20)

    pack = asyncio.run(main())
    start = next(i for i, r in enumerate(pack) if r.get("vs") == "lamp.driver_drift")
    flag: dict[str, Any] = {}
    for rec in pack[start + 1:]:
        if rec["n"] in ("flag", "report", "event"):
            break
        flag.setdefault(rec["n"], []).append(rec.get("v", rec.get("vs")))
    assert pack[start]["n"] == "flag"
    assert flag["flag_baseline"] == [60.0] and flag["flag_observed"] == [66.0]
    assert flag["flag_seq"][0] >= 2**40
    assert "learned" in flag["flag_detail"][0]
    assert flag["flag_evidence"] == [1.1]  # the judged night's ratio (the first night taught)
    # What was learned is on disk beside the outbox, for the next start.
    path = baselines_path(AnalyticsConfig(), str(outbox))
    with sqlite3.connect(path) as db:
        rows = dict(db.execute("SELECT detector, state FROM baselines WHERE node = 'lamp-1'").fetchall())
    assert '"learned":1' in rows["lamp"]


def test_a_detector_failure_is_logged_and_polling_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    """A reading the detectors cannot take (a register value that is not a number) costs that poll's analysis only."""
    stored: list[Any] = []

    async def store(node: Any, events: Any, cursor: int | None) -> None:
        stored.append((node.id, list(events)))

    feed = AnalyticsFeed(AnalyticsConfig(), ":memory:", store)
    node = NodeConfig(id="lamp-1", bus="bus0", unit=1)
    regs = load_role("lamp").registers
    bad = [(reg, "x" if reg.name == "power" else 0) for reg in regs]
    feed.check(node, T0, bad)
    assert feed.errors == 1 and "analytics failed on a poll of lamp-1" in caplog.text
    feed.check(node, T0 + 1, [(reg, 0) for reg in regs])
    assert feed.errors == 1 and feed.analytics.readings == 1  # the good poll was judged
