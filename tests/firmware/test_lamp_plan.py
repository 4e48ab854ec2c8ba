"""The lamp's per-minute evaluation from the night's plan decides as ``schedule.level_at`` does.

The lamp keeps the plan of the night (``firmware.night``) and imports the
schedule only when a night begins or a setting changes. Over three days, with a
photocell that sees storms and daylight, settings that become invalid and a
time zone that changes, every evaluation of the ``Role`` (on a board of stubs)
must give the level and source that ``level_at`` gives for the same inputs,
and the schedule must have been built only a few times.
"""

from __future__ import annotations

import json
from array import array
from pathlib import Path
from typing import Any

import mp_env  # noqa: F401 - ticks on CPython

from firmware import schedule as S  # noqa: N812
from firmware.registers import RegisterBank
from firmware.roles import lamp as role_module
from firmware.roles.lamp_level import photocell
from firmware.storage import Storage
from protocols.roles import common
from protocols.roles import lamp as spec

NIGHT = ((S.SUNSET, 0, 100), (S.FIXED, 23 * 60, 50), (S.FIXED, 5 * 60, 100), (S.SUNRISE, 0, 0))
EVENING = ((S.SUNSET, -20, 80), (S.FIXED, 22 * 60, 0))
CALENDAR = {"default": 0, "rules": [{"program": 1, "days": 0b0011000}]}  # Thursday and Friday nights
CALENDAR_WORDS = [0, 1, 0b0011000, 0, 0] + [0] * 28  # the same, as the role keeps it
START = 1736946000  # 2025-01-15 13:00 UTC


class Board:
    def __init__(self, folder: str) -> None:
        self.flash_dir = folder
        self.level = -1

    def relay(self, on: bool) -> None:
        pass

    def dimmer(self, percent: int) -> None:
        self.level = percent

    def read_meter(self) -> tuple[float, float, float]:
        return 230.0, 0.1, 20.0

    def read_temperature(self) -> float:
        return 30.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def synced(self) -> bool:
        return True

    def epoch(self) -> int:
        return self.now

    def ms(self) -> int:
        return 0


class Node:
    def __init__(self) -> None:
        self.tz_offset = 60
        self.peaks = 0

    def note_heap(self) -> None:
        self.peaks += 1

    def silence_ms(self) -> int:
        return 0


def _role(tmp_path: Path, configure: bool = True) -> Any:
    blocks = ((4, common.EVENT_WINDOW_START, common.EVENT_WINDOW * common.EVENT_WORDS), *spec.BLOCKS)
    bank = RegisterBank(spec.REGISTERS, blocks=blocks, role="lamp", role_id=spec.ROLE_ID)
    role = role_module.Role(Board(str(tmp_path)), bank, Storage(str(tmp_path / "counters.json")))
    role.clock = Clock()
    role.node = Node()
    role.start()
    role.control = spec.CONTROL_PROGRAM
    if not configure:
        return role
    bank.set("latitude", 52_370_000)
    bank.set("longitude", 4_900_000)
    bank.set("safe_level", 90)
    bank.set("mode", 1)
    role.programs[0] = array("h", [v for p in NIGHT for v in p])  # packed, as the role keeps them
    role.programs[1] = array("h", [v for p in EVENING for v in p])
    role.calendar = role.calendar_words = array("H", CALENDAR_WORDS)
    role.control = spec.CONTROL_PROGRAM
    role._plan = None
    return role


def test_the_plan_decides_as_level_at_does(tmp_path: Path) -> None:
    role = _role(tmp_path)
    bank = role.bank
    programs: list[Any] = [NIGHT, EVENING] + [None] * 14  # what the role holds, as the schedule reads it
    seen: set[int] = set()
    for step in range(3 * 24 * 60 // 7):
        now = START + step * 7 * 60
        role.clock.now = now
        phase = step % 97
        lux = None if phase < 10 else 5.0 if phase < 40 else 500.0 if phase < 70 else 40.0
        photo_on, photo_off = (20, 60) if step < 200 else (0, 0) if step < 300 else (30, 100)
        if step == 350:
            role.node.tz_offset = 120
        if step == 400:
            bank.set("latitude", 89_000_000)  # beyond the almanac's checked range: still a valid place
            role._plan = None
        if step == 450:
            role.programs[1] = programs[1] = None  # the calendar names a program not stored: invalid settings
            role._plan = None
        if (photo_on, photo_off) != (bank.get("photo_on"), bank.get("photo_off")):
            bank.set("photo_on", photo_on)
            bank.set("photo_off", photo_off)
            role._plan = None  # as a write of the photocell settings does
        dark = role._dark
        role._lux = lux
        photo = photocell(bank)
        want, source = S.level_at(now, role.node.tz_offset, bank.get("latitude") / 1e6,
                                  bank.get("longitude") / 1e6, CALENDAR, programs, None, lux,
                                  photo, dark)
        if source in (S.DEFAULT_SAFE, S.INVALID) and want > 0:
            want = bank.get("safe_level")
        role._evaluate()
        assert (role.target, role.source) == (want, source), (step, now, lux, photo, dark)
        seen.add(source)
        if lux is not None and photo is not None:
            role._dark = S.photocell_override(lux, dark, photo)
    assert seen == {S.PROGRAM, S.PHOTOCELL, S.INVALID}, seen
    assert role.node.peaks < 25, role.node.peaks  # schedule builds: a few nights, each setting change; not each minute


def test_the_schedule_uses_the_rules_numbers() -> None:
    """The schedule keeps copies of the point kinds: the rules module is not imported for a night's plan."""
    from protocols import programs

    assert (S.FIXED, S.SUNRISE, S.SUNSET) == (programs.FIXED, programs.SUNRISE, programs.SUNSET)
    assert S.validate_program is programs.validate_program  # the rules still read through the schedule


def test_a_program_damaged_in_flash_gives_the_safe_level_on_its_nights(tmp_path: Path) -> None:
    """Checked at boot: the node boots, counts it as stored, and lights the street at the safe level."""
    damaged = [[S.SUNSET, 0, 250]]  # a level no write can store
    (tmp_path / "lamp.json").write_text(json.dumps({
        "set": {"mode": 1, "latitude": 52_370_000, "longitude": 4_900_000},
        "programs": [damaged, [list(p) for p in EVENING]] + [None] * 14,
        "calendar": [0, 1, 0b0011000, 0, 0] + [0] * 28,
    }))
    role = _role(tmp_path, configure=False)
    assert role.bank.get("programs") == 0b11
    assert role.bank.holding[spec.PROGRAM_START + 1] == 0  # the window shows no points for it
    sources = set()
    for hours in range(0, 24 * 7, 5):
        now = START + hours * 3600
        role.clock.now = now
        role._evaluate()
        want, source = S.level_at(now, 60, 52.37, 4.9, {"default": 0, "rules": [{"program": 1, "days": 0b0011000}]},
                                  [damaged, [list(p) for p in EVENING]] + [None] * 14)
        if source == S.INVALID:
            want = role.bank.get("safe_level")
        assert (role.target, role.source) == (want, source), hours
        sources.add(source)
    assert S.INVALID in sources


def test_cached_sun_times_follow_the_place_and_the_day() -> None:
    """Sun times kept per day at one place: another place, or a day eight later in the same slot, is computed afresh."""
    from firmware import almanac, night_plan

    sunset = (night_plan.SUNSET, 0, 100)
    day = 20100  # 2025-01-13
    oslo, quito = (59.91, 10.75), (-0.18, -78.47)
    seen = []
    for d, (lat, lon) in ((day, oslo), (day, quito), (day, oslo), (day + 8, oslo), (day, oslo)):
        seen.append(night_plan._event(sunset, d, lat, lon, 0))
        assert seen[-1] == almanac.sun_times_days(d, lat, lon)[1]
    assert seen[0] == seen[2] == seen[4] and len({seen[0], seen[1], seen[3]}) == 3
