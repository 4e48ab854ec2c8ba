"""The rules of a lamp's programs and calendar: what a node checks when a master writes them.

The part of :mod:`protocols.programs` (the whole rule set, which the gateway
checks an operator's command with) that a lamp needs
(``firmware.roles.lamp_config``): a node interns every name of the modules it
ever imports, so the photocell's, override's and place's rules, which only the
gateway checks (the node's registers bound those), stay out of its image.
Pure functions on plain JSON values; each raises ValueError naming the
program, point, rule or field at fault. What the values mean is in
:mod:`protocols.programs`' docstring.
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
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # 29 February recurs: a calendar date


def is_int(x):
    """True for an integer that is not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def validate_program(points, pid):
    """Raise ValueError naming program ``pid`` and the point if ``points`` is not a valid program."""
    if not isinstance(points, (list, tuple)) or not 1 <= len(points) <= MAX_POINTS:
        raise ValueError("program %d: expected a list of 1..%d switch points" % (pid, MAX_POINTS))
    seen = []  # type: list[object]
    for j in range(len(points)):
        where = "program %d point %d: " % (pid, j)
        pt = points[j]
        if not isinstance(pt, (list, tuple)) or len(pt) != 3:
            raise ValueError(where + "expected [kind, offset, level], got %r" % (pt,))
        kind, off, level = pt
        if not is_int(kind) or not 0 <= kind <= 2:
            raise ValueError(where + "kind %r is not FIXED (0), SUNRISE (1) or SUNSET (2)" % (kind,))
        if not is_int(off):
            raise ValueError(where + "offset %r is not a whole number of minutes" % (off,))
        if kind == FIXED:
            if not 0 <= off < 1440:
                raise ValueError(where + "FIXED time %d is not in 0..1439 minutes after midnight" % off)
        elif not -MAX_ASTRO_OFFSET <= off <= MAX_ASTRO_OFFSET:
            raise ValueError(where + "offset %d from %s is not in -%d..%d minutes" % (
                off, _KINDS[kind], MAX_ASTRO_OFFSET, MAX_ASTRO_OFFSET))
        if not is_int(level) or not 0 <= level <= 100:
            raise ValueError(where + "level %r is not a whole per cent in 0..100" % (level,))
        key = kind * 10000 + off
        if key in seen:
            raise ValueError(where + "same time as point %d" % seen.index(key))
        seen.append(key)


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
            raise ValueError("%sno program" % where)  # (a format longer than a name: not interned on the node)
        _check_pid(rule["program"], n_programs, where)
        if "days" not in rule and "from" not in rule:
            raise ValueError(where + "selects nothing: give days and/or from, to")
        if "days" in rule and (not is_int(rule["days"]) or not 1 <= rule["days"] <= EVERY_DAY):
            raise ValueError(where + "days %r is not a weekday mask in 1..127 (bit 0 Monday)" % (rule["days"],))
        if ("from" in rule) != ("to" in rule):
            raise ValueError(where + "from and to go together")
        if "from" in rule:
            for key in ("from", "to"):
                month_day(rule[key], "%s%s: " % (where, key))
