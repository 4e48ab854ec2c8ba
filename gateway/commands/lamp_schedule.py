"""The ``set_schedule`` action's parameters: programs and calendar, checked, and laid out as the lamp's words.

Parameters (JSON-friendly; the meaning is in ``firmware/schedule.py``)::

    {"programs": {"0": [[2, 0, 100], [0, 1380, 50], [1, 0, 0]], "3": null},
     "calendar": {"default": 0, "rules": [{"program": 1, "days": 48}]}}

``programs`` maps a program id (0..15, an integer or its decimal text) to its
switch points ``[kind, offset, level]``, or to null to delete it; programs not
named stay as they are. ``calendar`` replaces the node's calendar. At least one
of the two. The rules are :mod:`protocols.programs` (the node's own) plus the
lamp's register layout (``protocols.roles.lamp``: 16 programs of at most 16
points, 8 calendar rules) and what the node refuses: a calendar naming a
program that is not stored, deleting a program the calendar uses. So a
deletion needs the calendar in the same command, and the writes go out in
that order: programs stored, the calendar, programs deleted.

The register layout (program window and calendar block) is the lamp map's
(``PROGRAM_START``, ``CALENDAR_START`` and the word order its docstring gives).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.contracts import lamp as _lamp
from gateway.contracts import programs as rules

PROGRAM_START: int = _lamp.PROGRAM_START
"""Holding address of the program window: program_id, program_len, then the points."""
CALENDAR_START: int = _lamp.CALENDAR_START
"""Holding address of the calendar block: default program, then the rules."""
CALENDAR_WORDS: int = _lamp.CALENDAR_WORDS
PROGRAMS: int = min(_lamp.PROGRAMS, rules.MAX_PROGRAMS)
POINTS: int = min(_lamp.POINTS, rules.MAX_POINTS)
RULES: int = min(_lamp.RULES, rules.MAX_RULES)

Run = tuple[int, tuple[int, ...]]
"""A write: (holding address, words)."""
Points = tuple[tuple[int, int, int], ...]


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The checked parameters, normalised (program ids as decimal text); ValueError saying what is wrong."""
    extra = sorted(set(params) - {"programs", "calendar"})
    if extra:
        raise ValueError(f"set_schedule takes 'programs' and 'calendar'; unexpected {extra[0][:40]!r}")
    if not params:
        raise ValueError("set_schedule needs 'programs', 'calendar' or both")
    out: dict[str, Any] = {}
    deleted: set[int] = set()
    if "programs" in params:
        table = params["programs"]
        if not isinstance(table, Mapping) or not table:
            raise ValueError(f"'programs' must be a map of program id (0..{PROGRAMS - 1}) to points or null")
        checked: dict[str, Any] = {}
        for key, points in table.items():
            pid = _program_id(key)
            if str(pid) in checked:
                raise ValueError(f"program {pid} is given twice")
            if points is None:
                deleted.add(pid)
                checked[str(pid)] = None
                continue
            if isinstance(points, list | tuple) and len(points) > POINTS:
                raise ValueError(f"program {pid}: {len(points)} points; the lamp keeps at most {POINTS}")
            rules.validate_program(points, pid)
            checked[str(pid)] = [[int(k), int(o), int(v)] for k, o, v in points]
        out["programs"] = dict(sorted(checked.items(), key=lambda item: int(item[0])))
    if "calendar" in params:
        calendar = params["calendar"]
        rules.validate_calendar(calendar, PROGRAMS, RULES)
        for pid in rules.calendar_programs(calendar):
            if pid in deleted:
                raise ValueError(f"the calendar uses program {pid}, which this command deletes")
        out["calendar"] = _plain_calendar(calendar)
    elif deleted:
        first = min(deleted)
        raise ValueError(
            f"deleting program {first} needs the calendar in the same command "
            "(a lamp keeps every program its calendar uses)"
        )
    return out


def needed_programs(params: Mapping[str, Any]) -> list[int]:
    """Program ids the new calendar names that the command does not store itself: the node must hold them."""
    calendar = params.get("calendar")
    if calendar is None:
        return []
    stored = {int(k) for k, v in params.get("programs", {}).items() if v is not None}
    return [pid for pid in rules.calendar_programs(calendar) if pid not in stored]


def writes(params: Mapping[str, Any]) -> list[Run]:
    """The writes, in the order the node needs them: stored programs, the calendar, deleted programs."""
    table: Mapping[str, Any] = params.get("programs", {})
    out = [program_run(int(k), _points(v)) for k, v in table.items() if v is not None]
    if "calendar" in params:
        out.append((CALENDAR_START, calendar_words(params["calendar"])))
    out += [program_run(int(k), ()) for k, v in table.items() if v is None]
    return out


def program_run(pid: int, points: Points) -> Run:
    """The program window write that stores ``points`` as program ``pid`` (no points: deletes it)."""
    words = [pid, len(points)]
    for kind, offset, level in points:
        words += [kind, offset & 0xFFFF, level]
    return (PROGRAM_START, tuple(words))


def select_run(pid: int) -> Run:
    """The write of ``program_id`` alone: the node loads program ``pid`` into the window."""
    return (PROGRAM_START, (pid,))


def calendar_words(calendar: Mapping[str, Any]) -> tuple[int, ...]:
    """The calendar block: default program, then (program, weekday mask, from, to) per rule, zeros after."""
    words = [int(calendar["default"])]
    for rule in calendar.get("rules", ()):
        first = rules.month_day(rule["from"], "") if "from" in rule else 0
        last = rules.month_day(rule["to"], "") if "to" in rule else 0
        words += [int(rule["program"]), int(rule.get("days", 0)), first, last]
    words += [0] * (CALENDAR_WORDS - len(words))
    return tuple(words)


def describe(params: Mapping[str, Any]) -> str:
    """A few words for results: ``set schedule (programs 0, 1 stored, 3 deleted; calendar)``."""
    parts = []
    table: Mapping[str, Any] = params.get("programs", {})
    kept = [k for k, v in table.items() if v is not None]
    gone = [k for k, v in table.items() if v is None]
    if kept:
        parts.append(f"program{'s' if len(kept) > 1 else ''} {', '.join(kept)} stored")
    if gone:
        parts.append(f"{', '.join(gone)} deleted")
    text = "; ".join([", ".join(parts)] if parts else [])
    if "calendar" in params:
        text = f"{text}; calendar" if text else "calendar"
    return f"set schedule ({text})"


def _program_id(key: object) -> int:
    if isinstance(key, int) and not isinstance(key, bool):
        pid = key
    elif isinstance(key, str) and key.isdigit() and key == str(int(key)):
        pid = int(key)
    else:
        raise ValueError(f"programs: key {str(key)[:20]!r} is not a program id 0..{PROGRAMS - 1}")
    if not 0 <= pid < PROGRAMS:
        raise ValueError(f"programs: program id {pid} is not one of 0..{PROGRAMS - 1}")
    return pid


def _points(value: Any) -> Points:
    return tuple((int(k), int(o), int(v)) for k, o, v in value)


def _plain_calendar(calendar: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"default": int(calendar["default"]), "rules": []}
    for rule in calendar.get("rules", ()):
        plain: dict[str, Any] = {"program": int(rule["program"])}
        if "days" in rule:
            plain["days"] = int(rule["days"])
        if "from" in rule:
            plain["from"] = [int(rule["from"][0]), int(rule["from"][1])]
            plain["to"] = [int(rule["to"][0]), int(rule["to"][1])]
        out["rules"].append(plain)
    return out
