"""The lamp's programs, calendar, photocell and override settings: what makes them valid.

One rule set for both ends: the node checks a master's write with it
(``firmware.schedule``, ``firmware.roles.lamp_config``) and the gateway checks
an operator's command with it before anything is written (``bad_parameters``).
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

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Switch point kinds.
FIXED = const(0)
SUNRISE = const(1)
SUNSET = const(2)

MAX_PROGRAMS = const(16)
MAX_POINTS = const(16)
MAX_RULES = const(32)
MAX_ASTRO_OFFSET = const(360)
EVERY_DAY = const(127)  # weekday mask of all seven days (bit 0 Monday)

_KINDS = ("FIXED", "SUNRISE", "SUNSET")
_RULE_KEYS = ("program", "days", "from", "to")
_PHOTO_KEYS = ("on", "off", "level")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 29 February recurs: a calendar date


def is_int(x):
    """True for an integer that is not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_num(x):
    """True for an integer or float that is not a bool."""
    return (isinstance(x, int) or isinstance(x, float)) and not isinstance(x, bool)


def _point_error(pid, j, what):
    return ValueError("program %d point %d: %s" % (pid, j, what))


def validate_program(points, pid):
    """Raise ValueError naming program ``pid`` and the point if ``points`` is not a valid program."""
    if not isinstance(points, (list, tuple)) or not 1 <= len(points) <= MAX_POINTS:
        raise ValueError("program %d: expected a list of 1..%d switch points" % (pid, MAX_POINTS))
    seen = []  # type: list[object]
    for j in range(len(points)):
        pt = points[j]
        if not isinstance(pt, (list, tuple)) or len(pt) != 3:
            raise _point_error(pid, j, "expected [kind, offset, level], got %r" % (pt,))
        kind, off, level = pt
        if not is_int(kind) or not 0 <= kind <= 2:
            raise _point_error(pid, j, "kind %r is not FIXED (0), SUNRISE (1) or SUNSET (2)" % (kind,))
        if not is_int(off):
            raise _point_error(pid, j, "offset %r is not a whole number of minutes" % (off,))
        if kind == FIXED:
            if not 0 <= off < 1440:
                raise _point_error(pid, j, "FIXED time %d is not in 0..1439 minutes after midnight" % off)
        elif not -MAX_ASTRO_OFFSET <= off <= MAX_ASTRO_OFFSET:
            raise _point_error(
                pid, j, "offset %d from %s is not in -%d..%d minutes" % (off, _KINDS[kind], MAX_ASTRO_OFFSET,
                                                                        MAX_ASTRO_OFFSET)
            )
        if not is_int(level) or not 0 <= level <= 100:
            raise _point_error(pid, j, "level %r is not a whole per cent in 0..100" % (level,))
        key = kind * 10000 + off
        if key in seen:
            raise _point_error(pid, j, "same time as point %d" % seen.index(key))
        seen.append(key)


def validate_programs(programs):
    """Raise ValueError (naming the program and point) unless ``programs`` is a valid list of programs."""
    if not isinstance(programs, (list, tuple)) or not 1 <= len(programs) <= MAX_PROGRAMS:
        raise ValueError("programs: expected a list of 1..%d programs" % MAX_PROGRAMS)
    for pid in range(len(programs)):
        validate_program(programs[pid], pid)


def month_day(md, where):
    """``[month, day]`` -> month * 100 + day; ValueError (prefixed by ``where``) for anything else."""
    if not isinstance(md, (list, tuple)) or len(md) != 2 or not is_int(md[0]) or not is_int(md[1]):
        raise ValueError(where + "expected [month, day], got %r" % (md,))
    m, d = md
    if not 1 <= m <= 12 or not 1 <= d <= _MONTH_DAYS[m - 1]:
        raise ValueError(where + "no such date: month %d day %d" % (m, d))
    return m * 100 + d


def _check_pid(pid, n_programs, where):
    if not is_int(pid) or not 0 <= pid < n_programs:
        raise ValueError(where + "program %r is not one of 0..%d" % (pid, n_programs - 1))


def validate_calendar(calendar, n_programs, max_rules=MAX_RULES):
    """Raise ValueError (naming the rule and the field) unless ``calendar`` is valid.

    ``n_programs``: program ids run 0..n_programs - 1; ``max_rules``: the most
    rules the holder of the calendar keeps (the lamp's registers hold 8).
    """
    if not isinstance(calendar, dict):
        raise ValueError("calendar: expected {\"default\": id, \"rules\": [...]}, got %r" % (calendar,))
    for key in calendar:
        if key not in ("default", "rules"):
            raise ValueError("calendar: unknown key %r" % (key,))
    if "default" not in calendar:
        raise ValueError("calendar: no default program")
    _check_pid(calendar["default"], n_programs, "calendar default: ")
    rules = calendar.get("rules", ())
    if not isinstance(rules, (list, tuple)) or len(rules) > max_rules:
        raise ValueError("calendar rules: expected a list of at most %d rules" % max_rules)
    for r in range(len(rules)):
        rule = rules[r]
        where = "calendar rule %d: " % r
        if not isinstance(rule, dict):
            raise ValueError(where + "expected a dict, got %r" % (rule,))
        for key in rule:
            if key not in _RULE_KEYS:
                raise ValueError(where + "unknown key %r" % (key,))
        if "program" not in rule:
            raise ValueError(where + "no program")
        _check_pid(rule["program"], n_programs, where)
        if "days" not in rule and "from" not in rule:
            raise ValueError(where + "selects nothing: give days and/or from, to")
        if "days" in rule and (not is_int(rule["days"]) or not 1 <= rule["days"] <= EVERY_DAY):
            raise ValueError(where + "days %r is not a weekday mask in 1..127 (bit 0 Monday)" % (rule["days"],))
        if ("from" in rule) != ("to" in rule):
            raise ValueError(where + "from and to go together")
        if "from" in rule:
            month_day(rule["from"], where + "from: ")
            month_day(rule["to"], where + "to: ")


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
