"""Fault injection in the simulators: seeded, recorded, and no change to the default behaviour."""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

from boards.sim.faults import KINDS, FaultPlan
from boards.sim.lamp_parts import LampPhysics
from boards.sim.water import WaterPhysics
from boards.sim.weather import WeatherPhysics

T0 = 1_772_409_600.0
NODES = [(f"lamp-{i}", "lamp") for i in range(12)] + [(f"meter-{i}", "meter") for i in range(8)] + \
    [(f"env-{i}", "env") for i in range(4)]


def test_plan_is_seeded_shared_out_per_role_and_recorded(tmp_path: Path) -> None:
    plan = FaultPlan(7, T0, 30, share=0.5)
    drawn = plan.draw(NODES)
    again = FaultPlan(7, T0, 30, share=0.5).draw(NODES)
    assert {n: (f.kind, f.start, f.params) for n, f in drawn.items()} == \
        {n: (f.kind, f.start, f.params) for n, f in again.items()}
    assert {n: f.kind for n, f in FaultPlan(8, T0, 30, share=0.5).draw(NODES).items()} != \
        {n: f.kind for n, f in drawn.items()}
    roles = dict(NODES)
    assert Counter(roles[n] for n in drawn) == {"lamp": 6, "meter": 4, "env": 2}
    assert Counter(f.kind for f in drawn.values()) == {"driver_drift": 2, "cycling": 2, "day_burner": 2, "leak": 2,
                                                       "stuck_meter": 2, "sensor_drift": 1, "sensor_stuck": 1}
    assert {f.kind for f in drawn.values()} == {k for kinds in KINDS.values() for k in kinds}
    assert all(T0 + 3 * 86400 <= f.start < T0 + 23 * 86400 for f in drawn.values())
    plan.dump(tmp_path / "truth.json")
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["seed"] == 7 and len(truth["faults"]) == 12
    assert {f["node"] for f in truth["faults"]} == set(drawn)
    assert FaultPlan(7, T0, 30, share=0.0).draw(NODES) == {}


def test_lamp_without_faults_is_unchanged_and_wear_costs_power() -> None:
    healthy, worn = LampPhysics(seed=1), LampPhysics(seed=1)
    for lamp in (healthy, worn):
        lamp.set_relay(True)
        lamp.set_level(100)
        lamp.step(5.0)
    assert math.isclose(healthy.power_w(), 0.5 + 60 / 0.92)  # the documented full-light draw
    worn.wear_per_day = 0.1
    worn.step(86400.0)
    assert math.isclose(worn.wear, 0.1)
    assert math.isclose(worn.power_w(), healthy.power_w() * 1.1)
    assert math.isclose(worn.power_factor(), healthy.power_factor() * 0.95)


def test_cycling_driver_cuts_out_behind_a_closed_relay() -> None:
    lamp = LampPhysics()
    lamp.cycle_s = (60.0, 30.0)
    lamp.set_relay(True)
    lamp.set_level(100)
    seen = []
    for _ in range(18):
        lamp.step(10.0)
        seen.append(lamp.light > 0)
    assert lamp.relay and seen.count(False) == 6 and seen[:5] == [True] * 5


def test_water_closed_form_matches_the_wheel_and_faults_start_when_told() -> None:
    water = WaterPhysics(seed=4, now=T0)
    start = T0 + 7 * 3600  # the morning peak: water flows
    water.restore({"t": start}, start)
    counted = water.volume_between(start, start + 1800)
    water.advance(start + 1800)
    assert counted > 10
    assert abs(water.forward_l - counted) < 0.1  # the wheel integrates in 0.1 s steps
    leak = WaterPhysics(seed=4)
    leak.configure({"leak_lph": 3.0, "leak_from": T0 + 3600}, T0)
    assert math.isclose(leak.volume_between(T0, T0 + 4 * 3600) - WaterPhysics(seed=4).volume_between(
        T0, T0 + 4 * 3600), 9.0)
    stuck = WaterPhysics(seed=4)
    stuck.configure({"stuck_from": T0 + 3600}, T0)
    assert stuck.counted_between(T0 + 3600, T0 + 86400) == 0.0
    assert stuck.counted_between(T0, T0 + 3600) == WaterPhysics(seed=4).volume_between(T0, T0 + 3600)


def test_weather_sensor_faults() -> None:
    air, sensor = WeatherPhysics(seed=2), WeatherPhysics(seed=2)
    assert sensor.at(T0) == air.at(T0)  # no fault: the same as before
    sensor.configure({"bias_k": 0.5, "drift_k_per_day": 1.0, "drift_from": T0})
    assert math.isclose(sensor.at(T0 + 2 * 86400)["temperature_c"], air.at(T0 + 2 * 86400)["temperature_c"] + 2.5)
    stuck = WeatherPhysics(seed=2)
    stuck.configure({"stuck_from": T0})
    later = stuck.at(T0 + 5 * 3600)
    assert (later["temperature_c"], later["humidity"], later["pressure_pa"]) == \
        (air.at(T0)["temperature_c"], air.at(T0)["humidity"], air.at(T0)["pressure_pa"])
    assert later["pm25"] == air.at(T0 + 5 * 3600)["pm25"]  # the dust sensor still reads the air
