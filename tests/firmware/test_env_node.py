"""The environment firmware on the virtual street: the simulated BME280, SDS011 and sound-level module.

Values decoded by the node are compared with the physical values the
simulation used, within the datasheet's quantisation (see
tests/firmware/test_bme280.py for the tolerances); sensor failures set their
flags while the node goes on answering.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from pymodbus.pdu import ExceptionResponse
from street_kit import Master, control, prepare, wait_for, world
from test_bme280 import HUM_TOL, PRESS_TOL, TEMP_TOL

from protocols.roles import env as spec
from tools.sim.street import VirtualStreet

UNITS = (1, 2)
# The ESP32 budget on the 64-bit unix port, its simulated BME280, SDS011 and weather included (they share
# the node's heap here and are not on a real board): docs/performance.md, "bench node".
HEAPSIZE = os.environ.get("STREETEDGE_ENV_HEAP", "128K")
WEATHER = {"temperature_c": 21.37, "humidity": 48.25, "pressure_pa": 99876.5, "pm25": 12.3, "pm10": 20.4,
           "noise_db": 61.5}


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualStreet]:
    """Two environment nodes in a fixed weather, sampling every 250 ms."""
    s = VirtualStreet(tmp_path_factory.mktemp("env"), nodes=len(UNITS), role="env", heapsize=HEAPSIZE)
    for u in UNITS:
        prepare(s, u, {"unit": u, "role": "env", "baud": 19200, "sample_ms": 250}, {"weather": WEATHER})
    with s:
        s.start()
        yield s


@pytest.fixture(scope="module")
def master(street: VirtualStreet) -> Iterator[Master]:
    m = Master(street, spec.MAP)
    for u in UNITS:
        assert not m.write(u, climate_period=1, pm_period=2).isError()
    yield m
    m.close()


def _close(v: dict, weather: dict) -> bool:
    return (
        abs(v["temperature"] / 100.0 - weather["temperature_c"]) <= TEMP_TOL
        and abs(v["humidity"] / 100.0 - weather["humidity"]) <= HUM_TOL + 0.005
        and abs(v["pressure"] / 10.0 - weather["pressure_pa"]) <= PRESS_TOL + 0.05
        and v["pm25"] == round(weather["pm25"] * 10)
        and v["pm10"] == round(weather["pm10"] * 10)
        and v["noise"] == int(weather["noise_db"] * 10)
    )


def test_values_decode_to_the_physical_weather(street: VirtualStreet, master: Master) -> None:
    """Temperature, humidity, pressure within the BME280's quantisation; PM and noise exact to 0.1."""
    v = master.until(1, lambda v: _close(v, WEATHER), timeout=20, what="the simulated weather")
    assert v["status"] & spec.FAULTS == 0
    w = wait_for(lambda: world(street, 1).get("weather", {}).get("bme280_last") and world(street, 1)["weather"],
                 5, "world.json")
    assert w["bme280_last"] == [WEATHER["temperature_c"], WEATHER["humidity"], WEATHER["pressure_pa"]]
    assert w["bme280_conversions"] >= 1


def test_values_follow_the_weather(street: VirtualStreet, master: Master) -> None:
    """A cold, damp, low-pressure, dusty, quiet night."""
    night = {"temperature_c": -7.85, "humidity": 93.4, "pressure_pa": 97011.0, "pm25": 87.6, "pm10": 143.2,
             "noise_db": 41.3}
    control(street, 2, weather=night)
    master.until(2, lambda v: _close(v, night), timeout=25, what="the night's weather")
    control(street, 2, weather=WEATHER)


def test_a_missing_bme280_is_flagged_and_the_node_keeps_answering(street: VirtualStreet, master: Master) -> None:
    """No acknowledge on I2C: climate_fault, the last values stay, the other sensors go on; back: cleared."""
    good = master.until(1, lambda v: _close(v, WEATHER), timeout=20, what="good values")
    control(street, 1, weather=WEATHER, bme280="absent")
    v = master.until(1, lambda v: v["status"] & spec.STATUS_CLIMATE_FAULT, what="climate fault")
    assert (v["temperature"], v["humidity"], v["pressure"]) == (good["temperature"], good["humidity"],
                                                                 good["pressure"])
    assert v["climate_errors"] > good["climate_errors"]
    assert not v["status"] & (spec.STATUS_PM_FAULT | spec.STATUS_NOISE_FAULT)
    control(street, 1, weather=WEATHER, bme280="bad_id")  # a BMP280 where a BME280 should be
    master.until(1, lambda v: v["status"] & spec.STATUS_CLIMATE_FAULT, what="still a fault")
    control(street, 1, weather=WEATHER, bme280=None)
    master.until(1, lambda v: not v["status"] & spec.STATUS_CLIMATE_FAULT and _close(v, WEATHER), timeout=20,
                 what="climate back")


@pytest.mark.parametrize("fault", ["silent", "bad_checksum", "garbage"])
def test_a_failing_dust_sensor_is_flagged(street: VirtualStreet, master: Master, fault: str) -> None:
    """Nothing, bad checksums or garbage from the SDS011: pm_fault after two queries; a good answer clears it."""
    # Start from settled good values: an earlier test may have just changed this node's weather.
    before = master.until(2, lambda v: _close(v, WEATHER) and not v["status"] & spec.STATUS_PM_FAULT, timeout=30,
                          what="settled good values")
    control(street, 2, weather=WEATHER, sds011=fault)
    v = master.until(2, lambda v: v["status"] & spec.STATUS_PM_FAULT and v["pm_errors"] > before["pm_errors"],
                     timeout=30, what=f"pm fault ({fault})")
    assert v["pm_errors"] > before["pm_errors"]
    assert (v["pm25"], v["pm10"]) == (before["pm25"], before["pm10"])  # last good values kept
    control(street, 2, weather=WEATHER, sds011=None)
    master.until(2, lambda v: not v["status"] & spec.STATUS_PM_FAULT, timeout=30, what="pm back")


def test_sound_input_out_of_range_is_flagged(street: VirtualStreet, master: Master) -> None:
    """A disconnected sound-level module (0 V) sets noise_fault; reconnected, it clears."""
    control(street, 1, weather=WEATHER, sound="open")
    master.until(1, lambda v: v["status"] & spec.STATUS_NOISE_FAULT, what="noise fault")
    control(street, 1, weather=WEATHER, sound=None)
    master.until(1, lambda v: not v["status"] & spec.STATUS_NOISE_FAULT, what="noise back")


def test_long_dust_periods_let_the_sensor_sleep(street: VirtualStreet, master: Master) -> None:
    """pm_period >= 60 s: after a reading the laser and fan are switched off (pm_sleeping)."""
    assert not master.write(1, pm_period=60).isError()
    master.until(1, lambda v: v["status"] & spec.STATUS_PM_SLEEPING, timeout=15, what="sensor asleep")
    assert not master.write(1, pm_period=2).isError()
    master.until(1, lambda v: not v["status"] & spec.STATUS_PM_SLEEPING, timeout=15, what="sensor awake")


def test_writes_out_of_range_are_refused_and_change_nothing(master: Master) -> None:
    """Exception 3 for a value outside the register's bounds; the settings stay."""
    before = master.holding(2)
    for name, raw in (("pm_period", 1), ("climate_period", 0), ("noise_offset", 201),
                      ("temperature_offset", -501)):
        rr = master.write(2, **{name: raw})
        assert isinstance(rr, ExceptionResponse) and rr.exception_code == 3, (name, rr)
    assert master.holding(2) == before
