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
# The refusals' texts, one a line, chosen by number (_refusal): a node holds each string literal of a loaded
# module as an object of its own in its heap (32 bytes or more), and one string as one.
_T_POINTS = const(0)
_T_POINT = const(1)
_T_KIND = const(2)
_T_OFFSET = const(3)
_T_FIXED = const(4)
_T_ASTRO = const(5)
_T_LEVEL = const(6)
_T_SAME = const(7)
_T_MONTH_DAY = const(8)
_T_DATE = const(9)
_T_PID = const(10)
_T_CALENDAR = const(11)
_T_CAL_KEY = const(12)
_T_DEFAULT = const(13)
_T_RULES = const(14)
_T_RULE = const(15)
_T_RULE_KEY = const(16)
_T_NO_PROGRAM = const(17)
_T_NOTHING = const(18)
_T_DAYS = const(19)
_T_FROM_TO = const(20)
_TEXTS = (
    "program %d: expected a list of 1..%d switch points\n"
    "expected [kind, offset, level], got %r\n"
    "kind %r is not FIXED (0), SUNRISE (1) or SUNSET (2)\n"
    "offset %r is not a whole number of minutes\n"
    "FIXED time %d is not in 0..1439 minutes after midnight\n"
    "offset %d from %s is not in -%d..%d minutes\n"
    "level %r is not a whole per cent in 0..100\n"
    "same time as point %d\n"
    "expected [month, day], got %r\n"
    "no such date: month %d day %d\n"
    "program %r is not one of 0..%d\n"
    "calendar: expected {\"default\": id, \"rules\": [...]}, got %r\n"
    "calendar: unknown key %r\n"
    "calendar: no default program\n"
    "calendar rules: expected a list of at most %d rules\n"
    "expected a dict, got %r\n"
    "unknown key %r\n"
    "no program\n"
    "selects nothing: give days and/or from, to\n"
    "days %r is not a weekday mask in 1..127 (bit 0 Monday)\n"
    "from and to go together"
)


def _refusal(text, args=(), where=""):
    """ValueError saying ``where`` then text number ``text`` of _TEXTS formatted with ``args``."""
    return ValueError(where + _TEXTS.split("\n")[text] % args)


def is_int(x):
    """True for an integer that is not a bool."""
    return isinstance(x, int) and not isinstance(x, bool)


def validate_program(points, pid):
    """Raise ValueError naming program ``pid`` and the point if ``points`` is not a valid program."""
    if not isinstance(points, (list, tuple)) or not 1 <= len(points) <= MAX_POINTS:
        raise _refusal(_T_POINTS, (pid, MAX_POINTS))
    seen = []  # type: list[object]
    for j in range(len(points)):
        where = "program %d point %d: " % (pid, j)
        pt = points[j]
        if not isinstance(pt, (list, tuple)) or len(pt) != 3:
            raise _refusal(_T_POINT, (pt,), where)
        kind, off, level = pt
        if not is_int(kind) or not 0 <= kind <= 2:
            raise _refusal(_T_KIND, (kind,), where)
        if not is_int(off):
            raise _refusal(_T_OFFSET, (off,), where)
        if kind == FIXED:
            if not 0 <= off < 1440:
                raise _refusal(_T_FIXED, (off,), where)
        elif not -MAX_ASTRO_OFFSET <= off <= MAX_ASTRO_OFFSET:
            raise _refusal(_T_ASTRO, (off, _KINDS[kind], MAX_ASTRO_OFFSET, MAX_ASTRO_OFFSET), where)
        if not is_int(level) or not 0 <= level <= 100:
            raise _refusal(_T_LEVEL, (level,), where)
        key = kind * 10000 + off
        if key in seen:
            raise _refusal(_T_SAME, (seen.index(key),), where)
        seen.append(key)


def month_day(md, where):
    """``[month, day]`` -> month * 100 + day; ValueError (prefixed by ``where``) for anything else."""
    if not isinstance(md, (list, tuple)) or len(md) != 2 or not is_int(md[0]) or not is_int(md[1]):
        raise _refusal(_T_MONTH_DAY, (md,), where)
    m, d = md
    if not 1 <= m <= 12 or not 1 <= d <= _MONTH_DAYS[m - 1]:
        raise _refusal(_T_DATE, (m, d), where)
    return m * 100 + d


def _check_pid(pid, n_programs, where):
    if not is_int(pid) or not 0 <= pid < n_programs:
        raise _refusal(_T_PID, (pid, n_programs - 1), where)


def validate_calendar(calendar, n_programs, max_rules=MAX_RULES):
    """Raise ValueError (naming the rule and the field) unless ``calendar`` is valid.

    ``n_programs``: program ids run 0..n_programs - 1; ``max_rules``: the most
    rules the holder of the calendar keeps (the lamp's registers hold 8).
    """
    if not isinstance(calendar, dict):
        raise _refusal(_T_CALENDAR, (calendar,))
    for key in calendar:
        if key not in ("default", "rules"):
            raise _refusal(_T_CAL_KEY, (key,))
    if "default" not in calendar:
        raise _refusal(_T_DEFAULT)
    _check_pid(calendar["default"], n_programs, "calendar default: ")
    rules = calendar.get("rules", ())
    if not isinstance(rules, (list, tuple)) or len(rules) > max_rules:
        raise _refusal(_T_RULES, (max_rules,))
    for r in range(len(rules)):
        rule = rules[r]
        where = "calendar rule %d: " % r
        if not isinstance(rule, dict):
            raise _refusal(_T_RULE, (rule,), where)
        for key in rule:
            if key not in _RULE_KEYS:
                raise _refusal(_T_RULE_KEY, (key,), where)
        if "program" not in rule:
            raise _refusal(_T_NO_PROGRAM, (), where)
        _check_pid(rule["program"], n_programs, where)
        if "days" not in rule and "from" not in rule:
            raise _refusal(_T_NOTHING, (), where)
        if "days" in rule and (not is_int(rule["days"]) or not 1 <= rule["days"] <= EVERY_DAY):
            raise _refusal(_T_DAYS, (rule["days"],), where)
        if ("from" in rule) != ("to" in rule):
            raise _refusal(_T_FROM_TO, (), where)
        if "from" in rule:
            for key in ("from", "to"):
                month_day(rule[key], "%s%s: " % (where, key))
