"""The lamp's stored settings, program table and calendar: load at boot, check and save on a master's write.

Imported only for those moments and released afterwards (:mod:`firmware.lazy`):
none of it is needed between a boot and the next settings write.

``lamp.json``: ``{"set": {name: raw}, "programs": [points or null] x 16,
"calendar": [33 words]}``, written whole and atomically
(:func:`firmware.storage.atomic_write`); a value that is missing or out of
bounds at boot is replaced by its default. Programs and calendar are checked
(``protocols.program_rules``, the rules the gateway checks too) when a master
writes them and when they are loaded at boot: the lamp's plan of a night then
needs no checks (``firmware.night_plan.plan``). One that is damaged in flash
still counts as stored, and the nights it is chosen for get the safe level, as
``schedule.level_at`` gives for invalid settings; a damaged calendar gives the
safe level every night until a valid one is written.
"""

import json
from array import array

from firmware.roles import lamp  # the role's copies of the table's numbers (the table may be released)
from firmware.storage import atomic_write
from protocols.errors import ModbusException

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# Persisted one-word (or s32) settings and their factory values, in the same order: a string and a tuple of
# integers are one object each in a node's heap while this module is loaded, where nine (name, value) pairs were ten.
SETTINGS = "mode autonomy_after safe_level latitude longitude photo_on photo_off photo_level rated_power"
DEFAULTS = (0, 300, 100, 0, 0, 0, 0, 100, 60)
_FC_WRITE = const(16)
_EX_ILLEGAL_VALUE = const(3)
_EX_DEVICE_FAILURE = const(4)


def load(role):
    """Publish the stored settings (defaults where missing) and load programs and calendar into ``role``."""
    bank = role.bank
    names = SETTINGS.split()
    for k in range(len(names)):
        bank.set(names[k], DEFAULTS[k])
    try:
        with open(getattr(role.board, "flash_dir", ".") + "/lamp.json") as f:
            data = json.load(f)
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict):
        values = data.get("set")
        if isinstance(values, dict):
            for name in names:
                v = values.get(name)
                lo, hi = bank.bounds(name)
                if isinstance(v, int) and lo <= v <= hi:
                    bank.set(name, v)
        from protocols import program_rules

        progs = data.get("programs")
        if isinstance(progs, list) and len(progs) == lamp.PROGRAMS:
            for pid in range(lamp.PROGRAMS):
                pts = progs[pid]
                if pts and isinstance(pts, list):
                    points = []
                    for p in pts:
                        points.append(tuple(p) if isinstance(p, list) else p)
                    pts = tuple(points)
                    try:
                        program_rules.validate_program(pts, pid)
                        packed = array("h", bytes(6 * len(pts)))  # kind, offset, level per point
                        for k in range(len(pts)):
                            packed[3 * k], packed[3 * k + 1], packed[3 * k + 2] = pts[k]
                    except ValueError:
                        # Damaged in flash: one word, counted as stored, reads empty in the window, the safe level
                        # on the nights it is chosen for (firmware.night_plan); saved as [[]], it fails at boot again.
                        packed = array("h", bytes(2))
                    role.programs[pid] = packed
        words = data.get("calendar")
        if isinstance(words, list) and len(words) == lamp.CALENDAR_WORDS:
            h = bank.holding
            for k in range(lamp.CALENDAR_WORDS):
                w = words[k]
                h[lamp.CALENDAR_START + k] = w if isinstance(w, int) and 0 <= w <= 0xFFFF else 0
            role.calendar_words = array("H", h[lamp.CALENDAR_START:lamp.CALENDAR_START + lamp.CALENDAR_WORDS])
            try:
                build_calendar(h)
                role.calendar = role.calendar_words
            except ValueError:
                role.calendar = None  # damaged in flash: the safe level until a valid calendar is written
        program_rules = None
    show_program(role, 0)


def save(role):
    """Write ``lamp.json``; ModbusException (device failure) if the flash refuses."""
    bank = role.bank
    values = {}
    for name in SETTINGS.split():
        values[name] = bank.get(name)
    progs = []  # as lists of [kind, offset, level] (loops, not comprehensions: each is code in the heap)
    for pts in role.programs:
        points = None
        if pts:
            points = []
            if len(pts) % 3:
                points.append([])  # damaged in flash
            else:
                for k in range(0, len(pts), 3):
                    points.append([pts[k], pts[k + 1], pts[k + 2]])
        progs.append(points)
    text = json.dumps({"set": values, "programs": progs, "calendar": list(role.calendar_words)})
    try:
        atomic_write(getattr(role.board, "flash_dir", ".") + "/lamp.json", text)
    except OSError:
        role.settings_error = True
        raise ModbusException(_FC_WRITE, _EX_DEVICE_FAILURE, "cannot save lamp.json") from None
    role.settings_error = False


def show_program(role, pid):
    """Put program ``pid`` into the program window (unused points read 0); publish ``programs``."""
    # The `programs` register: one bit per stored program. It moves only at a load or a program write, each of
    # which shows a program after (one function, not two: each is code in the heap while this module is loaded).
    mask = 0
    for k in range(lamp.PROGRAMS):
        if role.programs[k]:
            mask |= 1 << k
    role.bank.set("programs", mask)
    h = role.bank.holding
    start = lamp.PROGRAM_START
    pts = role.programs[pid]
    n = len(pts) if pts and len(pts) % 3 == 0 else 0  # words; a damaged program shows none
    h[start] = pid
    h[start + 1] = n // 3
    for k in range(3 * lamp.POINTS):
        h[start + 2 + k] = pts[k] & 0xFFFF if k < n else 0


def block_write(role, address, count):
    """A master wrote the program window (store, delete or show a program) or the calendar block (kept if valid and
    every program it names is stored): see ``protocols.roles.lamp``. One function for both blocks: each is code in
    the heap while this module is loaded."""
    h = role.bank.holding
    if address >= lamp.CALENDAR_START:
        try:
            cal = build_calendar(h)
        except ValueError as exc:
            raise ModbusException(_FC_WRITE, _EX_ILLEGAL_VALUE, str(exc)) from None
        pids = [cal["default"]]
        for rule in cal["rules"]:
            pids.append(rule["program"])
        for pid in pids:
            if not role.programs[pid]:
                raise ModbusException(_FC_WRITE, _EX_ILLEGAL_VALUE, "program %d is not stored" % pid)
        old = (role.calendar, role.calendar_words)
        words = array("H", h[lamp.CALENDAR_START:lamp.CALENDAR_START + lamp.CALENDAR_WORDS])
        role.calendar = role.calendar_words = words
        try:
            save(role)
        except ModbusException:
            role.calendar, role.calendar_words = old
            raise
        role.log(lamp.EV_SETTINGS, address)
        role.stale = True
        return
    start = lamp.PROGRAM_START
    end = address + count
    pid = h[start]
    if address <= start + 1 < end:
        n = h[start + 1]
        if n == 0:
            cal = role.calendar
            used = cal is not None and cal[0] == pid
            for k in range(1, len(cal) - 3 if cal is not None else 0, 4):
                if (cal[k + 1] or cal[k + 2]) and cal[k] == pid:
                    used = True  # a rule in use names it
            if used:
                raise ModbusException(_FC_WRITE, _EX_ILLEGAL_VALUE, "the calendar uses program %d" % pid)
            pts = None
        else:
            pts = []
            for k in range(n):
                a = start + 2 + 3 * k
                off = h[a + 1]
                pts.append((h[a], off - 0x10000 if off & 0x8000 else off, h[a + 2]))
            from protocols import program_rules

            try:
                program_rules.validate_program(pts, pid)
            except ValueError as exc:
                raise ModbusException(_FC_WRITE, _EX_ILLEGAL_VALUE, str(exc)) from None
            pts = array("h", bytes(h[start + 2:start + 2 + 3 * n]))  # the points' words, as the window holds them
        old = role.programs[pid]
        role.programs[pid] = pts
        try:
            save(role)
        except ModbusException:
            role.programs[pid] = old
            raise
        role.log(lamp.EV_PROGRAMS, pid if pts else pid + 256)
        show_program(role, pid)
        role.stale = True
    elif address <= start < end:
        show_program(role, pid)


def build_calendar(h, check=True):
    """The calendar in the holding words ``h`` as firmware.schedule wants it; ValueError if invalid (``check``)."""
    rules = []
    for k in range(lamp.RULES):
        a = lamp.CALENDAR_START + 1 + 4 * k
        pid, days, first, last = h[a], h[a + 1], h[a + 2], h[a + 3]
        if days == 0 and first == 0:
            if last and check:
                raise ValueError("rule %d: a last date without a first" % k)
            continue  # an unused rule
        rule = {"program": pid}
        if days:
            rule["days"] = days
        if first or last:
            rule["from"] = [first // 100, first % 100]
            rule["to"] = [last // 100, last % 100]
        rules.append(rule)
    cal = {"default": h[lamp.CALENDAR_START], "rules": rules}
    if check:
        from protocols import program_rules

        program_rules.validate_calendar(cal, lamp.PROGRAMS)
    return cal
