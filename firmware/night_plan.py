"""The plan of a night: the switch points of the lamp's programs, placed with the sun times.

The part of the schedule (``firmware.schedule``) that a running lamp needs:
its settings were checked when they were written or loaded, so building a
night's plan needs neither the rules (``protocols.programs``) nor the
override, photocell and validation code. The lamp imports only this module
(and ``firmware.almanac``, the sun's part of ``firmware.astro``) when a night begins or a setting changes, then
releases it; ``firmware.schedule`` builds its plans with the same code. How a
program is read (its night, the equinox order of the points, fixed points
held between their astronomical neighbours) is in ``firmware.schedule``'s
docstring.
"""

from array import array

from firmware import almanac
from firmware.night import night_of

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Switch point kinds: protocols.programs' numbers (tests hold them equal).
FIXED = const(0)
SUNRISE = const(1)
SUNSET = const(2)

# Sun times at the place in _sun_place, one slot per day modulo eight (a plan's five consecutive days never share
# one): the day a slot holds, and its rise and set in UTC minutes. Fixed and packed (a list of small integers, an
# array of doubles: 0.3 KB) where a dictionary of (day, lat, lon) -> (rise, set) took 0.1 KB a day in the heap.
_SUN_SLOTS = const(8)
_sun_days = [None] * _SUN_SLOTS
_sun_times = array("d", [0] * (2 * _SUN_SLOTS))
_sun_place = [None, None]  # latitude, longitude of the cached days
# Whole-number constants are integers (720, not 720.0) with a float operand: the same float results, and a float
# literal is an object in the heap while the module is loaded, where a small integer is none.


def program_for(calendar, day):
    """Id of the program the calendar chooses for the night starting on ``day`` (days since 1970-01-01).

    ``calendar``: a dictionary (``firmware.schedule``'s), or the calendar block's 33 words as a lamp keeps them
    (``protocols.roles.lamp``: default, then program, weekday mask, from, to per rule; mask and from 0: unused).
    """
    if not isinstance(calendar, dict):
        # The words read in place: no dictionary per rule while a plan is built.
        pid = calendar[0]
        bit = md = 0
        for k in range(1, len(calendar) - 3, 4):
            days = calendar[k + 1]
            a = calendar[k + 2]
            if days == 0 and a == 0:
                continue
            if not bit:
                _, month, mday = almanac.civil_from_days(day)
                bit = 1 << almanac.weekday(day)
                md = month * 100 + mday
            if days and not days & bit:
                continue
            b = calendar[k + 3]
            if (a or b) and not (a <= md <= b if a <= b else md >= a or md <= b):
                continue
            pid = calendar[k]
        return pid
    pid = calendar["default"]
    rules = calendar.get("rules", ())
    if not rules:
        return pid
    _, month, mday = almanac.civil_from_days(day)
    bit = 1 << almanac.weekday(day)
    md = month * 100 + mday
    for rule in rules:
        if "days" in rule and not rule["days"] & bit:
            continue
        if "from" in rule:
            a = rule["from"][0] * 100 + rule["from"][1]
            b = rule["to"][0] * 100 + rule["to"][1]
            if not (a <= md <= b if a <= b else md >= a or md <= b):
                continue
        pid = rule["program"]
    return pid


def _event(point, day, lat, lon, tz):
    """Local minutes after midnight of ``day`` at which astronomical ``point`` falls on that day.

    Sun times are cached per day at one place; polar days are placed at solar midnight or noon.
    """
    if _sun_place[0] != lat or _sun_place[1] != lon:
        for k in range(_SUN_SLOTS):
            _sun_days[k] = None  # another place: no cached day is of use
        _sun_place[0] = lat
        _sun_place[1] = lon
    slot = day % _SUN_SLOTS
    if _sun_days[slot] != day:
        rise, set_, state = almanac.sun_times_days(day, lat, lon)
        if state != almanac.NORMAL:
            # Mean solar noon, the same every day, so that one day's sunset and the next day's sunrise tie exactly.
            noon = 720 - 4 * float(lon)
            if state == almanac.ALWAYS_UP:
                rise, set_ = noon - 720, noon + 720
            else:
                rise = set_ = noon
        _sun_days[slot] = day
        _sun_times[2 * slot] = rise
        _sun_times[2 * slot + 1] = set_
    return _sun_times[2 * slot + (1 if point[0] == SUNSET else 0)] + tz + point[1]


def layout(points, day, lat, lon, tz):
    """Switch times of a (valid) program for the night starting on ``day``, in order.

    Returns a list of ``(minutes after local midnight of day, level)``,
    non-decreasing in time: on a tie the later entry wins.
    """
    n = len(points)
    # Order of the points on an equinox day, counted from 12:00 (see firmware.schedule's docstring).
    noon = 720 - 4 * float(lon) + tz
    order = []
    for i in range(n):
        kind, off, _ = points[i]
        nom = off if kind == FIXED else noon + (360 if kind == SUNSET else -360) + off
        k = int((nom - 720) // 1440)  # the point's event is on day - k
        order.append((nom - 1440 * k, i, k))
    order.sort()
    pos = []
    first = last = -1
    fixed = 0
    for j in range(n):
        nom, i, k = order[j]
        if points[i][0] == FIXED:
            pos.append(nom)
            fixed += 1
        else:
            pos.append(_event(points[i], day - k, lat, lon, tz) - 1440 * k)
            last = j
            if first < 0:
                first = j
    if first >= 0 and fixed:
        # Hold each fixed point between its astronomical neighbours (those of the nights before and after at the ends).
        _, i, k = order[last]
        lo = _event(points[i], day - 1 - k, lat, lon, tz) - 1440 * (k + 1)
        los = [0] * n  # each fixed point's entry is set below before it is read
        for j in range(n):
            if points[order[j][1]][0] == FIXED:
                los[j] = lo
            else:
                lo = pos[j]
        _, i, k = order[first]
        hi = _event(points[i], day + 1 - k, lat, lon, tz) - 1440 * (k - 1)
        for j in range(n - 1, -1, -1):
            if points[order[j][1]][0] == FIXED:
                pos[j] = min(max(pos[j], los[j]), hi)
            else:
                hi = pos[j]
    out = []
    prev = None
    for j in range(n):
        p = pos[j]
        if prev is not None and p < prev:
            p = prev  # two astronomical points crossed (extreme offsets or latitudes): keep the order
        out.append((p, points[order[j][1]][2]))
        prev = p
    return out


def plan(now, tz_offset_minutes, lat, lon, calendar, programs, check=None):
    """The plan of the night in force at ``now``: ``(night, (times, levels), tz_offset_minutes)``.

    ``calendar`` as :func:`program_for` takes it; each of ``programs`` None, a tuple of points, or (a lamp's)
    the points packed in an ``array("h")``, kind, offset, level each.

    Every switch point of the programs chosen for the night before, that
    night and the night after: its time in minutes after local midnight of
    ``night`` in ``times`` (an ``array("d")``), its level in ``levels``
    (``bytes``), ordered so that the last point at or before a time sets the level then
    (:func:`firmware.night.level`; on a tie the later night, then the later
    point of its program wins). ``check(points, pid)``, if given, runs on
    each chosen program first (it raises ValueError on an invalid one);
    without it a chosen program that is not stored raises ValueError.
    """
    night = night_of(now, tz_offset_minutes)[0]
    found = []
    for d in (night - 1, night, night + 1):
        pid = program_for(calendar, d)
        points = programs[pid]
        if isinstance(points, array):
            # A lamp's program packed in words (firmware.roles.lamp_config); one word: damaged in flash. Loops,
            # not comprehensions, here: each comprehension is code of its own in the heap.
            if len(points) % 3:
                raise ValueError("program %d is damaged" % pid)
            packed = points
            points = []
            for k in range(0, len(packed), 3):
                points.append((packed[k], packed[k + 1], packed[k + 2]))
        if check is not None:
            check(points, pid)
        elif not points:
            raise ValueError("program %d is not stored" % pid)
        j = 0
        for at, lv in layout(points, d, lat, lon, tz_offset_minutes):
            found.append((at + 1440 * (d - night), d, j, lv))
            j += 1
    found.sort()
    times = array("d", bytes(8 * len(found)))
    levels = bytearray(len(found))
    for k in range(len(found)):
        times[k] = found[k][0]
        levels[k] = found[k][3]
    return night, (times, bytes(levels)), tz_offset_minutes
