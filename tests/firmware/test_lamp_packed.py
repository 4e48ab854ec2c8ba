"""The lamp keeps programs and calendar packed in words: what it reads back equals what the gateway wrote.

The gateway encodes a calendar into the block's words
(``gateway.commands.lamp_schedule.calendar_words``); the node keeps those
words and decodes them for a night's plan (``firmware.roles.lamp_level``).
A program's points are packed into an ``array("h")`` when stored and read
back as the schedule's tuples; a night's plan (``firmware.night_plan``) reads
both packed forms in place, and plans as from the schedule's forms.
"""

from __future__ import annotations

from array import array
from typing import Any

import pytest

from firmware import night_plan
from firmware.roles.lamp_config import build_calendar
from gateway.commands.lamp_schedule import calendar_words
from protocols.roles.lamp import CALENDAR_START, CALENDAR_WORDS

CALENDARS: list[dict[str, Any]] = [
    {"default": 0, "rules": []},
    {"default": 3, "rules": [{"program": 1, "days": 0b1100000}]},
    {"default": 15, "rules": [{"program": 2, "from": [12, 24], "to": [1, 6]},
                              {"program": 4, "days": 0b0011111, "from": [6, 1], "to": [8, 31]},
                              {"program": 0, "days": 1}]},
    {"default": 1, "rules": [{"program": k, "days": 1 << (k % 7), "from": [k + 1, 1], "to": [k + 1, 28]}
                             for k in range(8)]},
]


def calendar_of(words: Any) -> dict[str, Any]:
    """The calendar the lamp's settings code reads from the block's words (holding 250..282)."""
    holding = array("H", bytes(2 * CALENDAR_START)) + array("H", words)
    result: dict[str, Any] = build_calendar(holding, check=False)
    return result


@pytest.mark.parametrize("calendar", CALENDARS)
def test_the_calendar_read_from_the_gateways_words_is_the_calendar(calendar: dict[str, Any]) -> None:
    words = array("H", calendar_words(calendar))
    assert len(words) == CALENDAR_WORDS
    assert calendar_of(words) == calendar


def test_unused_rules_are_skipped_wherever_they_sit() -> None:
    words = [2, 0, 0, 0, 0, 5, 3, 0, 0] + [0] * 24  # rule 0 unused, rule 1 program 5 on Monday and Tuesday
    assert calendar_of(array("H", words)) == {"default": 2, "rules": [{"program": 5, "days": 3}]}


def pack(points: Any) -> array[int]:
    """A program as the lamp keeps it (``firmware.roles.lamp_config``): kind, offset, level per point."""
    return array("h", [v for p in points for v in p])


PROGRAMS: list[Any] = [((2, 0, 100), (0, 23 * 60, 50), (0, 5 * 60, 100), (1, 0, 0)),
                       ((2, -20, 80), (0, 22 * 60, 0)),
                       ((2, 15, 60), (1, -45, 0))] + [None] * 13


WINTER = {"default": 2, "rules": [{"program": 1, "from": [1, 10], "to": [1, 20]}, {"program": 0, "days": 0b0000110}]}


@pytest.mark.parametrize("calendar", [*CALENDARS[1:3], WINTER])
def test_a_plan_from_the_packed_forms_is_the_plan_from_the_schedules_forms(calendar: dict[str, Any]) -> None:
    calendar = {"default": calendar["default"] % 3,
                "rules": [dict(rule, program=rule["program"] % 3) for rule in calendar["rules"]]}
    words = array("H", calendar_words(calendar))
    packed = [pack(p) if p else None for p in PROGRAMS]
    chosen = set()
    for day in range(0, 400, 3):  # a year and more from 2025-01-01, every weekday and both date ranges
        now = 1735732800 + day * 86400 + (day % 24) * 3600
        chosen.add(night_plan.program_for(words, night_plan.night_of(now, 60)[0]))
        assert night_plan.program_for(words, day + 20089) == night_plan.program_for(calendar, day + 20089)
        assert night_plan.plan(now, 60, 52.37, 4.9, words, packed) == \
            night_plan.plan(now, 60, 52.37, 4.9, calendar, PROGRAMS)
    assert len(chosen) > 1  # the rules did choose


def test_a_damaged_program_fails_the_plan_of_its_nights() -> None:
    """One word: what the settings' load keeps for a program that fails the checks at boot."""
    packed = [array("h", bytes(2))] + [None] * 15
    with pytest.raises(ValueError, match="program 0 is damaged"):
        night_plan.plan(1735732800, 60, 52.37, 4.9, array("H", bytes(66)), packed)
