"""The lamp's own control on the virtual street: calendar through a night, autonomy, time, events, safe mode.

pymodbus is the master. The virtual clock (``control.json``) runs the night
fast; physics and the gateway-silence timer run in real time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from lamp_kit import HEAPSIZE, Lamp, epoch
from street_kit import Master, control, prepare, wait_for, world

from protocols.regmap import INPUT
from protocols.roles import common
from protocols.roles import lamp as spec
from tools.sim.street import VirtualStreet

UNITS = (1, 2, 3)
SAMPLE_MS = 250
FIXED, SUNRISE, SUNSET = 0, 1, 2
AMSTERDAM = (52_370_000, 4_900_000)  # micro-degrees
# Dusk to dawn, 50 % from 23:00 to 05:00 local.
NIGHT = [(SUNSET, 0, 100), (FIXED, 23 * 60, 50), (FIXED, 5 * 60, 100), (SUNRISE, 0, 0)]


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualStreet]:
    """Three lamps sampling every 250 ms."""
    s = VirtualStreet(tmp_path_factory.mktemp("lamps"), nodes=len(UNITS), heapsize=HEAPSIZE)
    for u in UNITS:
        prepare(s, u, {"unit": u, "role": "lamp", "baud": 19200, "sample_ms": SAMPLE_MS})
    with s:
        s.start()
        yield s


@pytest.fixture(scope="module")
def master(street: VirtualStreet) -> Iterator[Master]:
    m = Master(street, spec.MAP)
    yield m
    m.close()


def restart(street: VirtualStreet, unit: int, **hardware: object) -> None:
    """A power cut and power back (SIGKILL, then start)."""
    street.kill_node(unit)
    street.start_node(unit, hardware=dict(hardware) or None)


def sync(street: VirtualStreet, lamp: Lamp, at: int, speed: float = 1) -> None:
    """Put the virtual world at ``at`` (running ``speed`` x) and set the node's clock to it, as a gateway would."""
    control(street, lamp.unit, epoch=at, speed=speed)
    w = wait_for(lambda: (w := world(street, lamp.unit)) and abs(w["epoch"] - at) < 3600 * speed + 60 and w,
                 10, "the virtual clock")
    assert not lamp.write(clock=int(w["epoch"])).isError()


def test_the_input_mirrors_answer_dim_level_and_relay_as_written(street: VirtualStreet, master: Master) -> None:
    """Firmware 1.1: input 27-28 read what holding dim_level and relay hold, so a poll of input 0-28 alone is
    enough (the gateway's one-request lamp poll)."""
    lamp = Lamp(master, UNITS[-1])
    assert lamp.get("firmware") >= spec.MIRRORS_SINCE
    at = dict(spec.MIRRORS)
    for level, on in ((37, 1), (0, 0), (100, 1)):
        assert not lamp.write(relay=on, dim_level=level).isError()
        assert lamp.read(INPUT, at["dim_level"], 2) == [level, on] == [lamp.get("dim_level"), lamp.get("relay")]


def test_time_sync_sets_the_clock_and_unsynced_follows_its_age(street: VirtualStreet, master: Master) -> None:
    """Unsynced at boot; a clock write syncs it; older than clock_max_age is unsynced again; 2019 is refused."""
    lamp = Lamp(master, 3)
    v = lamp.values()
    assert v["node_status"] & common.NODE_CLOCK_UNSYNCED
    assert v["status"] & spec.STATUS_CLOCK_UNSYNCED
    assert v["clock_age"] == common.NEVER and lamp.get("clock") == 0

    t = epoch(2025, 6, 1, 12)
    assert not lamp.write(clock_max_age=1).isError()  # one minute
    sync(street, lamp, t)
    v = lamp.values()
    assert v["node_status"] & common.NODE_CLOCK_UNSYNCED == 0
    assert v["clock_age"] < 5
    assert abs(lamp.get("clock") - t) < 10

    bad = lamp.write(clock=epoch(2019, 12, 31))
    assert bad.isError() and bad.exception_code == 3
    assert abs(lamp.get("clock") - t) < 10  # unchanged

    control(street, 3, speed=60)  # a virtual minute per second: the sync ages
    v = lamp.until(lambda v: v["node_status"] & common.NODE_CLOCK_UNSYNCED, what="unsynced by age")
    assert v["clock_age"] > 60
    events, _ = lamp.events()
    assert common.EV_CLOCK_STALE in [e[2] for e in events]
    assert next(e for e in events if e[2] == common.EV_CLOCK_SET)[3] == 0  # the first set of this boot

    control(street, 3, speed=1)
    assert not lamp.write(clock_max_age=10080, clock=t).isError()
    assert lamp.get("node_status") & common.NODE_CLOCK_UNSYNCED == 0


def test_the_lamp_follows_its_calendar_through_a_night(street: VirtualStreet, master: Master) -> None:
    """Program mode, Amsterdam, a January night at 30 virtual minutes a second: 100, 50, 100, off."""
    lamp = Lamp(master, 1)
    assert not lamp.write(tz_offset=60, latitude=AMSTERDAM[0], longitude=AMSTERDAM[1]).isError()
    assert not lamp.program(0, NIGHT).isError()
    assert not lamp.calendar(0).isError()
    assert lamp.get("programs") == 1
    sync(street, lamp, epoch(2025, 1, 15, 14), speed=1800)  # 15:00 local, sunset about 16:50
    assert not lamp.write(mode=1).isError()
    seen: list[int] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        v = lamp.values()
        assert v["control"] == spec.CONTROL_PROGRAM
        if not seen or seen[-1] != v["level_target"]:
            seen.append(v["level_target"])
        if seen[-4:] == [100, 50, 100, 0]:
            break
        time.sleep(0.1)
    assert seen[-4:] == [100, 50, 100, 0], seen
    assert seen[0] == 0  # daylight at 15:00
    assert lamp.get("level_source") == 0  # the program
    w = wait_for(lambda: world(street, 1).get("light") == 0.0 and world(street, 1), 10, "lamp off at sunrise")
    assert w["relay"] is False
    events, _ = lamp.events()
    levels = [e[3] for e in events if e[2] == spec.EV_LEVEL]
    assert levels[-4:] == [100, 50, 100, 0]
    control(street, 1, speed=1)


def test_autonomy_when_the_gateway_falls_silent_and_back_to_gateway_control(
    street: VirtualStreet, master: Master
) -> None:
    """Silent for autonomy_after: the program drives; reads keep that; a dim write takes control back."""
    lamp = Lamp(master, 2)
    assert not lamp.program(0, [(FIXED, 0, 30)]).isError()  # 30 % all day
    assert not lamp.calendar(0).isError()
    sync(street, lamp, epoch(2025, 3, 1, 22))
    assert not lamp.write(autonomy_after=3, dim_level=80, relay=1).isError()
    v = lamp.values()
    assert v["control"] == spec.CONTROL_GATEWAY and v["level_target"] == 80
    time.sleep(4.5)  # no request to unit 2
    v = lamp.values()
    assert v["control"] == spec.CONTROL_AUTONOMOUS, v
    assert v["level_target"] == 30 and lamp.get("dim_level") == 30
    wait_for(lambda: world(street, 2).get("light") == 0.3, 5, "30 % light")
    time.sleep(1)
    assert lamp.get("control") == spec.CONTROL_AUTONOMOUS  # reads alone do not take control back
    assert not lamp.write(dim_level=60).isError()
    v = lamp.values()
    assert v["control"] == spec.CONTROL_GATEWAY and v["level_target"] == 60 and v["level_source"] == 5
    wait_for(lambda: world(street, 2).get("light") == 0.6, 5, "60 % light")
    codes = [(e[2], e[3]) for e in lamp.events()[0]]
    assert (spec.EV_CONTROL, spec.CONTROL_AUTONOMOUS) in codes and (spec.EV_CONTROL, spec.CONTROL_GATEWAY) in codes
    assert not lamp.write(autonomy_after=300).isError()


def test_power_up_lights_the_street_until_told_otherwise(street: VirtualStreet, master: Master) -> None:
    """After a power cut: no clock, so the safe level (100 %), control power-up; settings survive."""
    lamp = Lamp(master, 2)
    assert not lamp.write(safe_level=70).isError()
    restart(street, 2)
    v = lamp.until(lambda v: v["power"] > 0, what="lit")
    assert v["control"] == spec.CONTROL_POWER_UP and v["level_target"] == 70 and v["level_source"] == 3
    assert lamp.get("safe_level") == 70 and lamp.get("programs") == 1
    assert not lamp.write(safe_level=100).isError()
    assert lamp.get("level_target") == 100


def test_events_keep_their_order_across_power_cuts_and_a_master_catches_up(
    street: VirtualStreet, master: Master
) -> None:
    """Seqs only grow across SIGKILL and restart; any starting seq gives the events from there."""
    lamp = Lamp(master, 3)
    before, _ = lamp.events()
    for level in (10, 20, 30, 40):
        assert not lamp.write(dim_level=level).isError()
    restart(street, 3)
    for level in (50, 60):
        assert not lamp.write(dim_level=level).isError()
    events, header = lamp.events()
    seqs = [e[0] for e in events]
    assert seqs == sorted(set(seqs))
    assert set(e[0] for e in before) <= set(seqs)
    boots = [e for e in events if e[2] == common.EV_BOOT]
    assert boots and boots[-1][3] == common.BOOT_POWER_ON
    after_boot = [e for e in events if e[0] > boots[-1][0]]
    assert [e[3] for e in after_boot if e[2] == spec.EV_LEVEL][-2:] == [50, 60]
    assert header["event_next"] > seqs[-1]
    middle = seqs[len(seqs) // 2]
    tail, _ = lamp.events(middle)
    assert [e[0] for e in tail] == [s for s in seqs if s >= middle]
    assert lamp.events(seqs[-1] + 1)[0] == []


def test_a_full_ring_overwrites_the_oldest_and_counts_the_lost(street: VirtualStreet, master: Master) -> None:
    """More events than the ring holds, none acknowledged: event_lost counts every overwrite."""
    lamp = Lamp(master, 1)
    _, header = lamp.events()
    assert not lamp.write(event_from=header["event_next"]).isError()  # all read so far
    lost0 = lamp.get("event_lost")
    n = 120  # the ring holds 96
    for k in range(n):
        answer = lamp.write(tz_offset=60 + (k % 2))  # one settings event each
        assert not answer.isError(), f"write {k}: {answer} (exception code {getattr(answer, 'exception_code', '?')})"
    v = lamp.values()
    assert v["event_lost"] - lost0 == n - 96 + (v["event_next"] - header["event_next"] - n)
    assert v["event_next"] - v["event_oldest"] == 96
    events, _ = lamp.events(header["event_next"])
    assert len(events) == 96 and events[0][0] == v["event_oldest"]
    assert not lamp.write(tz_offset=60).isError()


def test_crash_loop_boots_in_safe_mode_lit_and_answering(street: VirtualStreet, master: Master) -> None:
    """A metering chip that crashes every boot: after three crashes the node comes up in safe mode."""
    lamp = Lamp(master, 2)
    node = street.node(2)
    street.kill_node(2)
    for _ in range(3):
        street.start_node(2, wait=False, hardware={"fault": "meter"})
        wait_for(lambda: not node.alive(), 20, "the crash")
    street.start_node(2, hardware={"fault": "meter"})
    v = lamp.values()
    assert v["node_status"] & common.NODE_SAFE_CRASH_LOOP and v["status"] & spec.STATUS_SAFE_MODE
    assert v["boot_reason"] == common.BOOT_CRASH and v["crash_resets"] >= 3
    w = wait_for(lambda: (w := world(street, 2)) and w.get("light") == 1.0 and w, 10, "lit in safe mode")
    assert w["relay"] is True
    refused = lamp.write(dim_level=10)
    assert refused.isError() and refused.exception_code == 4  # the role is not running
    assert not lamp.write(command=common.CMD_LEAVE_SAFE_MODE).isError()
    wait_for(lambda: not node.alive(), 10, "the reboot")
    street.start_node(2)
    v = lamp.values()
    assert v["node_status"] & common.NODE_SAFE_CRASH_LOOP == 0 and v["boot_reason"] == common.BOOT_COMMAND
    assert not lamp.write(dim_level=100, relay=1).isError()


def test_alarms_dimming_relay_and_supply(street: VirtualStreet, master: Master) -> None:
    """A stuck driver, a welded relay and a mains cut raise their flags and events, and clear."""
    lamp = Lamp(master, 1)
    assert not lamp.write(dim_level=20, relay=1).isError()
    control(street, 1, fault="dimmer")
    lamp.until(lambda v: v["status"] & spec.STATUS_DIMMING_FAILURE, what="dimming failure")
    control(street, 1, fault=None)
    lamp.until(lambda v: not v["status"] & spec.STATUS_DIMMING_FAILURE, what="dimming failure cleared")
    control(street, 1, fault="relay")
    assert not lamp.write(relay=0).isError()
    lamp.until(lambda v: v["status"] & spec.STATUS_RELAY_FAILURE and v["status"] & spec.STATUS_ON_WHEN_OFF,
               what="relay failure")
    losses = lamp.get("supply_losses")
    control(street, 1, mains=False)
    v = lamp.until(lambda v: v["status"] & spec.STATUS_SUPPLY_LOSS, what="supply loss")
    assert v["voltage"] == 0 and v["power"] == 0
    control(street, 1)
    lamp.until(lambda v: v["supply_losses"] == losses + 1 and not v["status"] & spec.STATUS_SUPPLY_LOSS,
               what="supply back, counted")
    on = {e[3] for e in lamp.events()[0] if e[2] == common.EV_ALARM_ON}
    assert {spec.STATUS_DIMMING_FAILURE, spec.STATUS_RELAY_FAILURE, spec.STATUS_SUPPLY_LOSS} <= on
    restart(street, 1)  # the welded relay healed by a new world
    assert not lamp.write(dim_level=100, relay=1).isError()


def test_the_unit_changes_only_by_command_and_persists(street: VirtualStreet, master: Master) -> None:
    """unit alone stages; command 3 applies it after the answer; config.json keeps it; never by broadcast."""
    lamp = Lamp(master, 3)
    assert not lamp.write(unit=9).isError()
    assert lamp.get("unit") == 9 and lamp.get("role") == spec.ROLE_ID  # still unit 3
    rr = master.client.write_register(spec.MAP["command"].address, common.CMD_APPLY_UNIT, device_id=0,
                                      no_response_expected=True)
    time.sleep(0.3)
    assert lamp.get("role") == spec.ROLE_ID  # broadcast refused: still unit 3
    assert not lamp.write(command=common.CMD_APPLY_UNIT).isError()
    nine = Lamp(master, 9)
    assert nine.get("unit") == 9 and nine.get("role") == spec.ROLE_ID
    assert json.loads((street.node(3).flash / "config.json").read_text())["unit"] == 9
    assert not nine.write(unit=3, command=common.CMD_APPLY_UNIT).isError()
    assert lamp.get("unit") == 3
    del rr
