"""Meter detectors on volumes made by the virtual board's water physics (household draws, injected faults)."""

from __future__ import annotations

import math

from boards.sim.water import WaterPhysics
from gateway.analytics import Analytics, AnalyticsConfig, Flag

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC
POLL = 300.0


_COUNTED: dict[int, float] = {}  # per physics object: what its meter counted so far


def run(engine: Analytics, water: WaterPhysics, days: float, node: str = "meter-1",
        start: float = T0) -> list[Flag]:
    """Poll the meter every 5 min for ``days`` from ``start``; its register holds whole litres."""
    flags: list[Flag] = []
    counted = _COUNTED.get(id(water), 0.0)
    for k in range(int(days * 86400 / POLL)):
        t = start + k * POLL
        counted += water.counted_between(t, t + POLL)
        flags += engine.observe(node, "meter", "street", t + POLL, {"volume": math.floor(counted)})
    _COUNTED[id(water)] = counted
    return flags


def test_households_raise_nothing_over_ten_days() -> None:
    for seed in range(2):
        assert run(Analytics(AnalyticsConfig()), WaterPhysics(seed=seed), 10, f"meter-{seed}") == []


def test_a_2_litre_an_hour_leak_is_found_within_three_nights() -> None:
    water = WaterPhysics(seed=3)
    start = T0 + 5 * 86400 + 22 * 3600  # an evening
    water.configure({"leak_lph": 2.0, "leak_from": start}, T0)
    flags = run(Analytics(AnalyticsConfig()), water, 12)
    leak = [f for f in flags if f.rule == "water.night_flow"]
    assert len(leak) == 1
    assert leak[0].time - start < 3 * 86400
    assert len(leak[0].evidence) == 3 and all(rate >= 2.0 for _, rate in leak[0].evidence)
    assert [f.rule for f in flags] == ["water.night_flow"]


def test_stuck_meter_is_flagged_from_its_own_daily_use() -> None:
    water = WaterPhysics(seed=5)
    stuck = T0 + 9 * 86400 + 8 * 3600
    water.configure({"stuck_from": stuck}, T0)
    flags = run(Analytics(AnalyticsConfig()), water, 11)
    flag = next(f for f in flags if f.rule == "water.stuck_meter")
    assert stuck < flag.time < stuck + 13 * 3600
    assert flag.baseline >= 20 and flag.observed == 0.0
    assert "no pulse" in flag.detail


def test_consumption_far_from_the_weekday_profile() -> None:
    water = WaterPhysics(seed=6)
    engine = Analytics(AnalyticsConfig())
    run(engine, water, 9)
    water.configure({"mode": "constant", "lpm": 5.0}, T0 + 9 * 86400)  # 7,200 l a day
    flags = run(engine, water, 2, start=T0 + 9 * 86400)
    profile = [f for f in flags if f.rule == "water.profile"]
    assert profile and profile[0].observed > 3 * profile[0].baseline


def test_a_night_with_a_dry_interval_breaks_the_streak() -> None:
    """Two leaking nights, a repaired one, two more: never three in a row, never flagged."""
    engine = Analytics(AnalyticsConfig())
    water = WaterPhysics(seed=11)
    water.configure({"mode": "off"}, T0)
    flags = []
    for night in range(5):
        water.configure({"leak_lph": 0.0 if night == 2 else 6.0, "leak_from": T0}, T0)
        flags += run(engine, water, 1, start=T0 + night * 86400)
    assert [f for f in flags if f.rule == "water.night_flow"] == []
    assert engine.state("meter-1", "meter")["mnf"]["streak"] == 2
