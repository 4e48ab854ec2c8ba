"""The water meter firmware on the virtual street: litres, flow, alarms and settings, driven by pymodbus.

Four meter nodes (units 1..4) sample every 250 ms; each test steers the water
through the node's ``control.json`` and checks the registers against the
virtual meter's truth in ``world.json``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.pdu import ExceptionResponse
from street_kit import HEAPSIZE, Master, control, prepare, wait_for, world

from firmware.roles.meter import SAVE_PULSES
from protocols.roles import common
from protocols.roles import meter as spec
from tools.sim.street import VirtualStreet

UNITS = (1, 2, 3, 4)
SAMPLE_MS = 250


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualStreet]:
    """Four meters, the water off, sampling every 250 ms."""
    s = VirtualStreet(tmp_path_factory.mktemp("meters"), nodes=len(UNITS), role="meter", heapsize=HEAPSIZE)
    for u in UNITS:
        prepare(s, u, {"unit": u, "role": "meter", "baud": 19200, "sample_ms": SAMPLE_MS}, {"water": {"mode": "off"}})
    with s:
        s.start()
        yield s


@pytest.fixture(scope="module")
def master(street: VirtualStreet) -> Iterator[Master]:
    m = Master(street, spec.MAP)
    yield m
    m.close()


def _water(street: VirtualStreet, unit: int) -> dict:
    return wait_for(lambda: world(street, unit).get("water"), 5, "world.json")


def test_pulses_become_litres(street: VirtualStreet, master: Master) -> None:
    """About 20 l at 4 l/s: the saved volume equals the turns the meter made, within one pulse of the water."""
    unit = 1
    assert not master.write(unit, leak_gap=2).isError()  # 2 s without a turn: the flow stopped
    before = _water(street, unit)
    assert master.inputs(unit)["volume"] == 0
    control(street, unit, water={"mode": "constant", "lpm": 240.0})
    master.until(unit, lambda v: v["status"] & spec.STATUS_FLOWING and v["flow"] > 3000, what="flowing at 4 l/s")
    wait_for(lambda: _water(street, unit)["forward_l"] - before["forward_l"] >= 20.0, 15, "20 l")
    control(street, unit, water={"mode": "off"})
    v = master.until(unit, lambda v: v["pending"] == 0 and not v["status"] & spec.STATUS_FLOWING,
                     timeout=20, what="flow stopped and saved")
    w = _water(street, unit)
    turns = w["turns_forward"] - before["turns_forward"]
    flowed = w["forward_l"] - before["forward_l"]
    assert v["volume"] == turns  # 1 l per pulse, every turn counted once, no bounce counted
    assert abs(v["volume"] - flowed) < 1.0  # the wheel stops mid-turn: less than one pulse unseen
    assert v["reverse_volume"] == 0
    assert v["flow"] == 0


def test_leak_alarm_after_flow_that_never_pauses(street: VirtualStreet, master: Master) -> None:
    """leak_time 6 s, leak_gap 3 s, 1 turn/s: the leak flag rises after ~6 s and falls once the water stops."""
    unit = 2
    assert not master.write(unit, leak_time=6, leak_gap=3).isError()
    control(street, unit, water={"mode": "constant", "lpm": 60.0})
    v = master.until(unit, lambda v: v["status"] & spec.STATUS_LEAK, timeout=20, what="leak alarm")
    assert v["flow_duration"] >= 5
    assert v["status"] & spec.STATUS_FLOWING
    assert (common.EV_ALARM_ON, spec.STATUS_LEAK) in [(code, value) for _, code, value in master.events(unit)]
    control(street, unit, water={"mode": "off"})
    v = master.until(unit, lambda v: not v["status"] & (spec.STATUS_LEAK | spec.STATUS_FLOWING), timeout=15,
                     what="leak cleared")
    assert v["flow_duration"] == 0
    events = [(code, value) for _, code, value in master.events(unit)]
    assert events.index((common.EV_ALARM_ON, spec.STATUS_LEAK)) < events.index((common.EV_ALARM_OFF, spec.STATUS_LEAK))


def test_burst_alarm_on_flow_above_the_limit(street: VirtualStreet, master: Master) -> None:
    """burst_flow 1.5 l/s for 2 s: 2 l/s raises it, 0.5 l/s clears it after 2 s calm."""
    unit = 3
    assert not master.write(unit, burst_flow=1500, burst_time=2).isError()
    control(street, unit, water={"mode": "constant", "lpm": 120.0})
    v = master.until(unit, lambda v: v["status"] & spec.STATUS_BURST, timeout=15, what="burst alarm")
    assert v["flow"] > 1500
    assert (common.EV_ALARM_ON, spec.STATUS_BURST) in [(code, value) for _, code, value in master.events(unit)]
    control(street, unit, water={"mode": "constant", "lpm": 30.0})
    v = master.until(unit, lambda v: not v["status"] & spec.STATUS_BURST, timeout=15, what="burst cleared")
    assert v["flow"] <= 1500
    control(street, unit, water={"mode": "off"})


def test_backflow_counted_apart_and_alarmed(street: VirtualStreet, master: Master) -> None:
    """Water pushed back at 1 l/s: reverse_volume grows, forward volume does not, the alarm rises at 3 l."""
    unit = 4
    assert not master.write(unit, backflow_limit=30, leak_gap=2).isError()
    before = master.inputs(unit)
    control(street, unit, water={"mode": "backflow", "lpm": 60.0})
    v = master.until(unit, lambda v: v["status"] & spec.STATUS_BACKFLOW, timeout=15, what="backflow alarm")
    assert not v["status"] & spec.STATUS_NO_DIRECTION
    control(street, unit, water={"mode": "off"})
    v = master.until(unit, lambda v: v["pending"] == 0 and not v["status"] & spec.STATUS_BACKFLOW, timeout=15,
                     what="backflow cleared and saved")
    w = _water(street, unit)
    assert v["reverse_volume"] - before["reverse_volume"] >= 3
    assert v["reverse_volume"] == w["turns_reverse"]
    assert v["volume"] == before["volume"]


def test_tamper_and_low_battery(street: VirtualStreet, master: Master) -> None:
    """A magnet on the meter and a battery at 3.1 V raise their flags; both clear when they go away."""
    unit = 1
    control(street, unit, water={"mode": "off", "magnet": True, "battery_v": 3.1})
    v = master.until(unit, lambda v: v["status"] & spec.STATUS_TAMPER and v["status"] & spec.STATUS_LOW_BATTERY,
                     what="tamper and low battery")
    assert v["battery"] == 3100
    control(street, unit, water={"mode": "off", "magnet": False, "battery_v": 3.6})
    master.until(unit, lambda v: not v["status"] & (spec.STATUS_TAMPER | spec.STATUS_LOW_BATTERY),
                 what="tamper and low battery cleared")


def test_settings_survive_a_restart_and_bad_writes_change_nothing(street: VirtualStreet, master: Master) -> None:
    """Thresholds are persisted; a value out of range is refused with exception 3 and nothing changes."""
    unit = 3
    saved = Path(street.node(unit).flash) / "nvs-meter_set.bin"
    old = saved.read_bytes() if saved.exists() else b""
    assert not master.write(unit, leak_time=7200, battery_low=3000).isError()
    refused = master.write(unit, debounce=0)
    assert isinstance(refused, ExceptionResponse) and refused.exception_code == 3
    refused = master.write(unit, battery_low=5000)
    assert isinstance(refused, ExceptionResponse) and refused.exception_code == 3
    h = master.holding(unit)
    assert (h["leak_time"], h["battery_low"], h["debounce"]) == (7200, 3000, 20)
    wait_for(lambda: saved.exists() and saved.read_bytes() != old, 10, "settings saved")
    street.kill_node(unit)
    street.start_node(unit)
    h = master.holding(unit)
    assert (h["leak_time"], h["battery_low"], h["burst_flow"]) == (7200, 3000, 1500)


def test_a_volume_is_never_lost_by_a_restart_after_a_pause(street: VirtualStreet, master: Master) -> None:
    """Flow, pause (saved at once), power cut: the volume after the restart is the volume before."""
    unit = 1
    control(street, unit, water={"mode": "constant", "lpm": 180.0})
    master.until(unit, lambda v: v["pending"] >= 3, what="turns counted")
    control(street, unit, water={"mode": "off"})
    before = master.until(unit, lambda v: v["pending"] == 0 and not v["status"] & spec.STATUS_FLOWING,
                          timeout=20, what="saved")
    street.kill_node(unit)
    street.start_node(unit)
    after = master.inputs(unit)
    assert after["volume"] == before["volume"] and after["reverse_volume"] == before["reverse_volume"]
    assert after["pending"] == 0


def test_a_flash_that_cannot_be_written_is_flagged_and_the_volume_waits(
    street: VirtualStreet, master: Master
) -> None:
    """Read-only flash: turns pile up in ``pending``, ``storage_error`` is set, the published volume stays."""
    unit = 2
    street.kill_node(unit)
    street.start_node(unit, hardware={"flash": "readonly"})
    try:
        before = master.inputs(unit)
        control(street, unit, water={"mode": "constant", "lpm": 240.0})
        v = master.until(unit, lambda v: v["status"] & spec.STATUS_STORAGE_ERROR and v["pending"] > SAVE_PULSES,
                         timeout=20, what="storage error")
        assert v["volume"] == before["volume"]
    finally:
        control(street, unit, water={"mode": "off"})
        street.kill_node(unit)
        street.start_node(unit)
