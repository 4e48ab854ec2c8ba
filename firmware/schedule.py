"""The lamp's calendar, programs, photocell and override, evaluated as pure functions.

Sans-IO: the lamp role passes the time (Unix epoch seconds, UTC), the local
offset, the place and the stored settings; nothing here reads a clock or a
file. All settings are plain JSON values, as the gateway writes them:

- a *program* is a list of 1..16 switch points ``[kind, offset, level]``:
  ``FIXED`` (offset = minutes after local midnight, 0..1439), ``SUNRISE`` or
  ``SUNSET`` (offset = minutes after the event, -360..360, negative before);
  level 0..100 (per cent, 0 = off). ``programs`` is a list; a program's id is
  its index.
- a *calendar* is ``{"default": id, "rules": [rule, ...]}``; a rule is
  ``{"program": id, "days": mask}`` (bit 0 Monday .. bit 6 Sunday) and/or
  ``{"program": id, "from": [month, day], "to": [month, day]}`` (inclusive,
  may wrap the new year: ``[12, 24]`` to ``[1, 2]``). The last rule that
  matches wins; with none, the default program.
- a *photocell* is ``{"on": lux, "off": lux, "level": 100}``: dark below
  ``on``, light above ``off`` (``on < off``, the band between is hysteresis),
  ``level`` optional. Dark lights a lamp that the program has off (a storm
  before sunset) at ``level``; it never changes a lamp the program has on,
  dimmed or not, and never switches one off.
- an *override* is ``[level, until]``: that level while ``now < until``
  (epoch seconds); it beats program and photocell.

How a program is read. The level in force is that of the last switch point
passed. A program belongs to a *night*: the program chosen for date D runs
from 12:00 local on D to 12:00 on D+1 (so "Friday" means Friday evening and
the small hours of Saturday), and its morning points fall on D+1. Around 12:00
nothing has usually happened since sunrise, so the previous night's last point
holds until the evening's first.

Astronomical points move with the seasons while fixed ones do not, and near
60 degrees of latitude a summer sunrise can come before a 05:00 point or a
sunset after a 23:00 one. Read literally, "100 % at 05:00" would then light
the lamp all day. So the points are first put in the order they have on an
equinox day at this longitude (sunrise 6 h before and sunset 6 h after mean
solar noon), and a fixed point never crosses its neighbouring astronomical
points: it is held at the sunrise (or sunset) it would overtake, where the
astronomical point, coming after it in that order, wins. "Dusk to dawn, 50 %
from 23:00 to 05:00" therefore goes straight to 50 % at a sunset after 23:00
and off at a sunrise before 05:00.

Where the sun does not rise or set (polar day or night, beyond the +-60
degrees the almanac is checked for), sunrise and sunset are both placed at
solar midnight (polar day: the lamp stays at its day level) or solar noon
(polar night: it stays at its night level).
"""

from firmware import night_plan
from firmware.night import level as night_level
from firmware.night_plan import FIXED, SUNRISE, SUNSET, layout, program_for  # noqa: F401 (kinds: the API's)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# The rules (protocols.programs: the gateway checks commands with the same ones) are imported when a check
# runs, not with this module: the lamp's plan for a night, built from settings checked when they were
# written or loaded, does without them (6 KB less at the node's peak). Their names read here too.
_RULES = ("EVERY_DAY", "MAX_ASTRO_OFFSET", "MAX_POINTS", "MAX_PROGRAMS", "MAX_RULES", "is_num",
          "validate_calendar", "validate_override", "validate_photo", "validate_place", "validate_program",
          "validate_programs")


def _rules():
    from protocols import programs

    return programs


def __getattr__(name):
    if name in _RULES:
        return getattr(_rules(), name)
    raise AttributeError(name)


# Why level_at() chose its level.
PROGRAM = const(0)
OVERRIDE = const(1)
PHOTOCELL = const(2)
DEFAULT_SAFE = const(3)  # no valid time: safe level
INVALID = const(4)  # the settings are invalid: safe level

# Calendar day masks (a night is named after the evening it starts on).
MONDAY = const(1)
TUESDAY = const(2)
WEDNESDAY = const(4)
THURSDAY = const(8)
FRIDAY = const(16)
SATURDAY = const(32)
SUNDAY = const(64)

# A clock before 2020 has not been set (an ESP32's RTC starts in 2000); the almanac stops at 2100.
VALID_FROM = 1577836800  # 2020-01-01T00:00Z
VALID_UNTIL = 4102444800  # 2100-01-01T00:00Z

_SAFE_LEVEL = const(100)



# --- validation: protocols.programs (the gateway checks commands with the same rules) ---------------


def time_valid(now):
    """True if ``now`` (epoch seconds) can be a set clock: 2020 to 2099."""
    return _rules().is_num(now) and VALID_FROM <= now < VALID_UNTIL


# --- photocell and safe state --------------------------------------------------------------------


def photocell_override(lux, dark, photo):
    """Next photocell state from a reading: True dark, False light, None unknown.

    ``dark`` is the previous state (None at power-up). Dark below ``on`` lux,
    light above ``off``, unchanged in between and when ``lux`` is None (no
    reading). Applying the same reading twice changes nothing, so the role may
    call this before ``level_at`` with the same arguments.
    """
    if lux is None or photo is None:
        return dark
    if lux < photo["on"]:
        return True
    if lux > photo["off"]:
        return False
    return dark


def safe_level(lux=None, photo=None, dark=None):
    """Level without a valid clock or settings: off only when a working photocell sees daylight, else lit.

    Lit is 100 %, or the photocell's level when it says dark. An unknown state
    (inside the hysteresis band after power-up) is treated as dark.
    """
    if photo is None or lux is None:
        return _SAFE_LEVEL
    try:
        _rules().validate_photo(photo)
    except ValueError:
        return _SAFE_LEVEL
    if photocell_override(lux, dark, photo) is False:
        return 0
    return photo.get("level", _SAFE_LEVEL)


# --- calendar and programs -----------------------------------------------------------------------


def switch_times(day, tz_offset_minutes, lat, lon, calendar, programs, check=True):
    """The chosen program's switch times for the night starting on ``day``: ``[(minutes, level), ...]``.

    Minutes count from local midnight of ``day`` (morning points are above
    1440); a tie goes to the later entry. Raises ValueError on invalid settings
    (``check`` False: the program was checked before; a program that is not
    stored still raises).
    """
    pid = program_for(calendar, day)
    points = programs[pid]
    if check:
        _rules().validate_program(points, pid)
    elif not points:
        raise ValueError("program %d is not stored" % pid)
    return layout(points, day, lat, lon, tz_offset_minutes)


def plan(now, tz_offset_minutes, lat, lon, calendar, programs, check=True):
    """The plan of the night in force at ``now``: ``(night, (times, levels), tz_offset_minutes)``.

    :func:`firmware.night_plan.plan` (what the lamp runs), with the chosen
    programs checked by the rules unless ``check`` is False (calendar, place
    and programs were checked before; only the chosen programs' presence is).
    Invalid settings raise ValueError.
    """
    return night_plan.plan(now, tz_offset_minutes, lat, lon, calendar, programs,
                           _rules().validate_program if check else None)


def program_level(now, tz_offset_minutes, lat, lon, calendar, programs):
    """Level the calendar's programs set at ``now`` (epoch seconds).

    Expects validated settings (``validate_*``); invalid ones raise.
    ``level_at`` checks them and never raises; the lamp role evaluates from
    :func:`plan` (see ``firmware.night``).
    """
    level = night_level(plan(now, tz_offset_minutes, lat, lon, calendar, programs), now)
    if level is None:
        raise ValueError("no switch point in the last two nights")
    return level


def level_at(now, tz_offset_minutes, lat, lon, calendar, programs, override=None, lux=None, photo=None,
             dark=None):
    """The level the lamp should have at ``now`` and why: ``(level, source)``.

    ``now`` epoch seconds UTC (None if the clock is not set);
    ``tz_offset_minutes`` local time minus UTC (the gateway follows summer
    time); ``lat``, ``lon`` degrees; ``calendar``, ``programs``, ``override``,
    ``photo`` as in the module docstring (override and photo may be None);
    ``lux`` the latest reading or None; ``dark`` the photocell state kept by
    the role (see ``photocell_override``).

    Source: ``OVERRIDE`` (in force), ``PHOTOCELL`` (dark lit a lamp the program has off),
    ``PROGRAM``, ``DEFAULT_SAFE`` (no valid clock: ``safe_level``; an override
    cannot be timed either) or ``INVALID`` (some setting is invalid:
    ``safe_level``). An override in force is obeyed even when other settings
    are invalid. Never raises.
    """
    if not time_valid(now):
        return safe_level(lux, photo, dark), DEFAULT_SAFE
    try:
        rules = _rules()
        if override is not None:
            rules.validate_override(override)
            if now < override[1]:
                return override[0], OVERRIDE
        rules.validate_place(lat, lon, tz_offset_minutes)
        if photo is not None:
            rules.validate_photo(photo)
        if not isinstance(programs, (list, tuple)):
            raise ValueError("programs: expected a list")
        rules.validate_calendar(calendar, len(programs))
        level = program_level(now, tz_offset_minutes, lat, lon, calendar, programs)
    except Exception:  # any bad setting (wrong types included) must leave the street lit, not crash the node
        return safe_level(lux, photo, dark), INVALID
    if level == 0 and photo is not None and photocell_override(lux, dark, photo):
        return photo.get("level", _SAFE_LEVEL), PHOTOCELL
    return level, PROGRAM
