"""A night's switch points, and the level they set at a given time: the lamp's per-minute evaluation.

:func:`firmware.night_plan.plan` lays out, for the night in force at a time,
every switch point that can decide the level during that night (the
calendar's programs of the night before, that night and the night after,
placed with the sun times): a *plan* ``(night, (times, levels), tz_offset)``,
the points' times an ``array("d")`` and their levels ``bytes`` (a lamp keeps
its plan all night: two buffers, not a tuple and a float object per point).
:func:`level` reads the level at any time of that night from the plan
alone, so the lamp imports the plan's code (calendar, programs, almanac:
``firmware.night_plan``) only when a new night begins or a setting
changes, and each minute costs a few comparisons. ``schedule.program_level``
reads its levels through this same function: one rule, two callers.

Times follow ``firmware.schedule``: ``night`` is the local day number
(days since 1970-01-01) of the evening the night starts on, the night runs
from 12:00 local on that day to 12:00 on the next; point times are minutes
after local midnight of ``night`` (morning points above 1440, the night
before's below 0), in the order in which the later one wins.
"""


def night_of(now, tz_offset_minutes):
    """``(night, minutes)``: the night in force at ``now`` (epoch seconds) and the time in the plan's minutes."""
    local = now + tz_offset_minutes * 60
    day = int(local // 86400)
    t = (local - day * 86400) / 60.0
    night = day if t >= 720 else day - 1
    return night, t + 1440 * (day - night)


def level(plan, now):
    """The level ``plan`` sets at ``now``; None if ``now`` falls in another night (or before every point)."""
    night, points, tz = plan
    n, t = night_of(now, tz)
    if n != night:
        return None
    times, levels = points
    found = None
    for i in range(len(times)):
        if times[i] > t:
            break
        found = levels[i]
    return found
