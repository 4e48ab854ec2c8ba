"""Environment detectors on the virtual board's weather, with injected sensor faults."""

from __future__ import annotations

from boards.sim.weather import WeatherPhysics
from gateway.analytics import Analytics, AnalyticsConfig, Flag

T0 = 1_772_409_600.0
POLL = 600.0


def street(engine: Analytics, nodes: list[WeatherPhysics], days: float, start: float = T0) -> list[Flag]:
    flags: list[Flag] = []
    for k in range(int(days * 86400 / POLL)):
        t = start + k * POLL
        for i, w in enumerate(nodes):
            v = w.at(t)
            flags += engine.observe(f"env-{i}", "env", "street", t, {
                "temperature": round(v["temperature_c"], 2), "humidity": round(v["humidity"], 2),
                "pressure": round(v["pressure_pa"], 1), "pm25": round(v["pm25"], 1), "pm10": round(v["pm10"], 1)})
    return flags


def nodes(n: int) -> list[WeatherPhysics]:
    out = []
    for i in range(n):
        w = WeatherPhysics(seed=i)
        w.configure({"bias_k": (i - n / 2) / 5})
        out.append(w)
    return out


def test_healthy_street_raises_no_sensor_flag() -> None:
    flags = street(Analytics(AnalyticsConfig()), nodes(4), 6)
    assert [f for f in flags if not f.rule.endswith("_episode")] == []


def test_drifting_thermometer_against_its_neighbours() -> None:
    ws = nodes(5)
    start = T0 + 3 * 86400
    ws[2].configure({"drift_k_per_day": 1.0, "drift_from": start})
    flags = [f for f in street(Analytics(AnalyticsConfig()), ws, 8) if not f.rule.endswith("_episode")]
    assert [(f.node, f.rule) for f in flags] == [("env-2", "env.drift")]
    flag = flags[0]
    assert start < flag.time < start + 3 * 86400
    assert abs(flag.observed - flag.baseline) > 1.5
    assert len(flag.evidence) == 6


def test_stuck_sensor_is_flat() -> None:
    ws = nodes(4)
    start = T0 + 2 * 86400 + 3600
    ws[1].configure({"stuck_from": start})
    flags = [f for f in street(Analytics(AnalyticsConfig()), ws, 4) if not f.rule.endswith("_episode")]
    assert {f.rule for f in flags} == {"env.flat_temperature", "env.flat_humidity", "env.flat_pressure"}
    assert {f.node for f in flags} == {"env-1"}
    assert all(6 * 3600 <= f.time - start < 7 * 3600 for f in flags)


def test_impossible_step() -> None:
    engine = Analytics(AnalyticsConfig())
    engine.observe("env-0", "env", "s", T0, {"temperature": 10.0, "humidity": 60.0})
    flags = engine.observe("env-0", "env", "s", T0 + 60, {"temperature": 25.0, "humidity": 61.0})
    assert [f.rule for f in flags] == ["env.step_temperature"]
    assert flags[0].evidence == ((T0, 10.0), (T0 + 60, 25.0))


def test_air_quality_episode_over_the_who_24_hour_guideline() -> None:
    engine = Analytics(AnalyticsConfig())
    flags: list[Flag] = []
    for h in range(72):
        pm25 = 8.0 if h < 30 else 30.0
        flags += engine.observe("env-0", "env", "s", T0 + h * 3600, {"pm25": pm25, "pm10": 1.7 * pm25 + 3})
    pm25_flags = [f for f in flags if f.rule == "env.pm25_episode"]
    assert len(pm25_flags) == 1
    flag = pm25_flags[0]
    assert flag.baseline == 15 and flag.observed > 15
    # The 24-hour mean crosses 15 once 8 of its hours read 30: (16 * 8 + 8 * 30) / 24 = 15.3.
    assert flag.time == T0 + (30 + 7) * 3600
    # PM10 reads 16.6 then 54: its mean passes 45 with 19 hours of 54 ((19 * 54 + 5 * 16.6) / 24 = 46.2).
    assert [f.time for f in flags if f.rule == "env.pm10_episode"] == [T0 + (30 + 18) * 3600]
