"""Lamp detectors on readings made by the virtual board's lamp physics."""

from __future__ import annotations

import math

import msgspec

from boards.sim.lamp_parts import LampPhysics
from gateway.analytics import Analytics, AnalyticsConfig, Flag
from gateway.analytics.lamp import daylight

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC
LAT, LON = 48.85, 2.35
POLL = 300.0


class Lamp:
    """A lamp on a program (on at dusk, 50 % from 23:00 to 05:00) and its node's registers."""

    def __init__(self, seed: int = 1) -> None:
        self.physics = LampPhysics(seed=seed, ambient_c=12.0)
        self.burn_s = 0.0
        self.switch_ons = 0
        self.relay_cmd = True

    def values(self, t: float) -> dict[str, float]:
        lamp = self.physics
        day = daylight(t, LAT, LON, 0.0)
        hour = (t % 86400) / 3600
        level = 0 if day else (50 if hour >= 23 or hour < 5 else 100)
        if level and not lamp.relay:
            self.switch_ons += 1
        if level:
            lamp.set_level(level)
        lamp.set_relay(level > 0 and self.relay_cmd)
        for _ in range(5):
            lamp.step(60.0)
            if lamp.relay and lamp.light > 0:
                self.burn_s += 60.0
        _v, _i, p = lamp.measure()
        return {"power": round(p, 1), "level_actual": round(lamp.light * 100),
                "level_target": level if lamp.relay else 0, "relay": float(lamp.relay),
                "power_factor": round(lamp.power_factor(), 3) if p else 0.0, "energy": math.floor(lamp.energy_wh),
                "burn_time": self.burn_s, "switch_ons": self.switch_ons, "temperature": lamp.thermometer(),
                "lux": 20000.0 if day else 1.0, "rated_power": 66.0, "latitude": LAT, "longitude": LON}


def run(engine: Analytics, lamp: Lamp, start: float, days: float, node: str = "lamp-1") -> list[Flag]:
    flags: list[Flag] = []
    for k in range(int(days * 86400 / POLL)):
        t = start + k * POLL
        flags += engine.observe(node, "lamp", "street", t, lamp.values(t))
    return flags


def faults(flags: list[Flag]) -> list[Flag]:
    return [f for f in flags if f.kind == "flag"]


def test_healthy_lamp_raises_no_flag_over_two_weeks() -> None:
    """Learning, then judging a lamp that keeps its program: daily reports only."""
    flags = run(Analytics(AnalyticsConfig()), Lamp(), T0, 14)
    assert faults(flags) == []
    assert {f.rule for f in flags} == {"lamp.energy_saved", "lamp.life", "lamp.street_energy_saved"}


def test_degrading_driver_is_flagged_with_its_baseline_and_evidence() -> None:
    """10 % a week from day 3: flagged within a week, naming the learned and the drawn power."""
    engine = Analytics(AnalyticsConfig())
    lamp = Lamp()
    before = run(engine, lamp, T0, 3)
    lamp.physics.wear_per_day = 0.10 / 7
    after = run(engine, lamp, T0 + 3 * 86400, 7)
    assert faults(before) == []
    drift = [f for f in after if f.rule == "lamp.driver_drift"]
    assert len(drift) == 1
    flag = drift[0]
    assert flag.time - (T0 + 3 * 86400) < 7 * 86400
    assert 60 < flag.baseline < 70  # the full-light draw it learned (65.7 W in the physics)
    assert flag.observed > flag.baseline * 1.05
    assert all(ratio > 1.0 for _, ratio in flag.evidence[-1:])
    assert "learned" in flag.detail


def test_cycling_lamp_is_flagged_once_per_episode() -> None:
    engine = Analytics(AnalyticsConfig())
    lamp = Lamp()
    run(engine, lamp, T0, 2)
    lamp.physics.cycle_s = (1200.0, 900.0)
    flags = run(engine, lamp, T0 + 2 * 86400, 3)
    cycling = [f for f in flags if f.rule == "lamp.cycling"]
    assert len(cycling) == 1
    assert cycling[0].observed >= 4
    assert [f for f in faults(flags) if f.rule not in ("lamp.cycling",)] == []


def test_day_burner_is_flagged_by_photocell_and_astronomical_clock() -> None:
    engine = Analytics(AnalyticsConfig())
    lamp = Lamp()
    run(engine, lamp, T0, 2)
    lamp.physics.welded = True  # the relay stays closed: the lamp burns on into the day
    flags = run(engine, lamp, T0 + 2 * 86400, 1)
    burner = [f for f in flags if f.rule == "lamp.day_burner"]
    assert len(burner) == 1
    assert daylight(burner[0].time, LAT, LON, 1800.0)
    assert "lx" in burner[0].detail
    # Asked off at dawn but lit: the lamp does not follow its commands either.
    assert [f.rule for f in faults(flags) if f.rule != "lamp.day_burner"] == ["lamp.not_following"]


def test_energy_saved_agrees_with_the_lamps_register_and_rating() -> None:
    """The night's report against an independent sum: energy register difference and rated power x hours lit."""
    engine = Analytics(AnalyticsConfig())
    lamp = Lamp()
    seen: list[tuple[float, dict[str, float]]] = []
    flags: list[Flag] = []
    for k in range(int(2 * 86400 / POLL)):
        t = T0 + 43200 + k * POLL  # from noon to noon: two whole nights
        v = lamp.values(t)
        seen.append((t, v))
        flags += engine.observe("lamp-1", "lamp", "street", t, v)
    report = next(f for f in flags if f.rule == "lamp.energy_saved")
    night = [v for t, v in seen if (t - 43200) // 86400 == (T0 + 43200 - 43200) // 86400]
    used = night[-1]["energy"] - night[0]["energy"]
    hours = (night[-1]["burn_time"] - night[0]["burn_time"]) / 3600
    full = 66.0 * hours
    x = dict(report.extra)
    assert x["used_wh"] == used
    assert math.isclose(x["full_wh"], full)
    assert math.isclose(x["share"], (full - used) / full)
    assert 0.2 < x["share"] < 0.5  # half power for six of the night's hours
    # And against the physics' own: the register loses less than 1 Wh to its rounding at either end.
    assert 10 < hours < 14


def test_not_following_a_command() -> None:
    engine = Analytics(AnalyticsConfig())
    lamp = Lamp()
    run(engine, lamp, T0, 2)
    lamp.physics.failed = True  # a dead driver: asked on, draws nothing
    flags = run(engine, lamp, T0 + 2 * 86400, 1)
    flag = next(f for f in flags if f.rule == "lamp.not_following")
    assert "asked on" in flag.detail
    assert flag.evidence[-1][0] - flag.evidence[0][0] >= 30 * 60


def test_remaining_life_is_reported_daily_and_shrinks() -> None:
    engine = Analytics(AnalyticsConfig())
    flags = run(engine, Lamp(), T0, 4)
    life = [f for f in flags if f.rule == "lamp.life"]
    assert len(life) >= 3
    left = [f.observed for f in life]
    assert left == sorted(left, reverse=True) and left[0] > left[-1]
    assert left[0] < 100_000


def test_rules_switch_off_per_class() -> None:
    config = AnalyticsConfig()
    off = msgspec.structs.replace(config, lamp=msgspec.structs.replace(
        config.lamp, driver=msgspec.structs.replace(config.lamp.driver, enabled=False)))
    engine = Analytics(off)
    lamp = Lamp()
    run(engine, lamp, T0, 3)
    lamp.physics.wear = 0.2
    flags = run(engine, lamp, T0 + 3 * 86400, 2)
    assert [f for f in flags if f.rule == "lamp.driver_drift"] == []
