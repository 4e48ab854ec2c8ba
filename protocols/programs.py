"""The lamp's programs, calendar, photocell and override settings: what makes them valid.

One rule set for both ends: the gateway checks an operator's command with it
before anything is written (``bad_parameters``), and the node checks a
master's write with its programs' and calendar's part,
:mod:`protocols.program_rules` (``firmware.roles.lamp_config``; this module
adds the photocell's, override's and place's rules, and takes those from there).
Pure functions on plain JSON values; each raises ValueError naming the program,
point, rule or field at fault. The meaning of the settings is in
``firmware/schedule.py``; their register encoding in ``protocols/roles/lamp.py``.

- a *program* is a list of 1..16 switch points ``[kind, offset, level]``:
  ``FIXED`` (offset = minutes after local midnight, 0..1439), ``SUNRISE`` or
  ``SUNSET`` (offset = minutes after the event, -360..360, negative before);
  level 0..100 (per cent, 0 = off); no two points at the same time;
- a *calendar* is ``{"default": id, "rules": [rule, ...]}``; a rule is
  ``{"program": id, "days": mask}`` (bit 0 Monday .. bit 6 Sunday) and/or
  ``{"program": id, "from": [month, day], "to": [month, day]}`` (inclusive,
  may wrap the new year);
- a *photocell* is ``{"on": lux, "off": lux, "level": 1..100}`` with on < off;
- an *override* is ``[level, until]`` (epoch seconds).
"""

# The rules the node checks too (protocols.program_rules): part of this module's API.
from protocols.program_rules import (
    EVERY_DAY,
    FIXED,
    MAX_ASTRO_OFFSET,
    MAX_POINTS,
    MAX_PROGRAMS,
    MAX_RULES,
    SUNRISE,
    SUNSET,
    is_int,
    month_day,
    validate_calendar,
    validate_program,
)

__all__ = ["EVERY_DAY", "FIXED", "MAX_ASTRO_OFFSET", "MAX_POINTS", "MAX_PROGRAMS", "MAX_RULES", "SUNRISE", "SUNSET",
           "calendar_programs", "is_int", "is_num", "month_day", "validate_calendar", "validate_override",
           "validate_photo", "validate_place", "validate_program", "validate_programs"]

_PHOTO_KEYS = ("on", "off", "level")


def is_num(x):
    """True for an integer or float that is not a bool."""
    return (isinstance(x, int) or isinstance(x, float)) and not isinstance(x, bool)


def validate_programs(programs):
    """Raise ValueError (naming the program and point) unless ``programs`` is a valid list of programs."""
    if not isinstance(programs, (list, tuple)) or not 1 <= len(programs) <= MAX_PROGRAMS:
        raise ValueError("programs: expected a list of 1..%d programs" % MAX_PROGRAMS)
    for pid in range(len(programs)):
        validate_program(programs[pid], pid)


def calendar_programs(calendar):
    """The program ids a (valid) calendar names: its default first, then each rule's, without repeats."""
    out = [calendar["default"]]
    for rule in calendar.get("rules", ()):
        if rule["program"] not in out:
            out.append(rule["program"])
    return out


def validate_photo(photo):
    """Raise ValueError unless ``photo`` is ``{"on": lux, "off": lux[, "level": 1..100]}`` with on < off."""
    if not isinstance(photo, dict):
        raise ValueError("photocell: expected {\"on\": lux, \"off\": lux}, got %r" % (photo,))
    for key in photo:
        if key not in _PHOTO_KEYS:
            raise ValueError("photocell: unknown key %r" % (key,))
    on = photo.get("on")
    off = photo.get("off")
    if not is_num(on) or not is_num(off) or not 0 <= on < off:  # type: ignore[operator]  # is_num checked
        raise ValueError("photocell: need 0 <= on < off lux, got on %r off %r" % (on, off))
    level = photo.get("level", 100)
    if not is_int(level) or not 1 <= level <= 100:
        raise ValueError("photocell: level %r is not in 1..100" % (level,))


def validate_override(override):
    """Raise ValueError unless ``override`` is ``[level 0..100, until epoch seconds]``."""
    if not isinstance(override, (list, tuple)) or len(override) != 2:
        raise ValueError("override: expected [level, until], got %r" % (override,))
    level, until = override
    if not is_int(level) or not 0 <= level <= 100:
        raise ValueError("override: level %r is not in 0..100" % (level,))
    if not is_num(until):
        raise ValueError("override: until %r is not epoch seconds" % (until,))


def validate_place(lat, lon, tz_offset_minutes):
    """Raise ValueError unless latitude, longitude (degrees) and UTC offset (minutes) are plausible."""
    if not is_num(lat) or not -90 <= lat <= 90:
        raise ValueError("latitude %r is not in -90..90 degrees" % (lat,))
    if not is_num(lon) or not -180 <= lon <= 180:
        raise ValueError("longitude %r is not in -180..180 degrees" % (lon,))
    if not is_int(tz_offset_minutes) or not -720 <= tz_offset_minutes <= 840:
        raise ValueError("UTC offset %r is not whole minutes in -720..840" % (tz_offset_minutes,))
