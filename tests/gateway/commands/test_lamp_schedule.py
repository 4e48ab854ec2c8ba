"""set_schedule parameters: checked by the node's own rules plus the lamp's layout, laid out as its words."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.commands import lamp_schedule as sc
from protocols.roles import lamp

DUSK = [[2, 0, 100], [0, 1380, 50], [1, -30, 0]]


def problem(params: dict[str, Any]) -> str:
    with pytest.raises(ValueError) as info:
        sc.check_params(params)
    return str(info.value)


def test_layout_comes_from_the_lamp_map() -> None:
    """Addresses and sizes are the lamp map's, not restated."""
    assert (sc.PROGRAM_START, sc.CALENDAR_START, sc.CALENDAR_WORDS) == (
        lamp.PROGRAM_START, lamp.CALENDAR_START, lamp.CALENDAR_WORDS)
    assert (sc.PROGRAMS, sc.POINTS, sc.RULES) == (lamp.PROGRAMS, lamp.POINTS, lamp.RULES)


def test_params_are_normalised() -> None:
    """Integer or text ids become text, tuples lists; the calendar is kept field by field."""
    got = sc.check_params({"programs": {3: DUSK, "0": [(0, 0, 20)], "5": None},
                           "calendar": {"default": 0, "rules": [{"program": 3, "days": 48}]}})
    assert got == {"programs": {"0": [[0, 0, 20]], "3": DUSK, "5": None},
                   "calendar": {"default": 0, "rules": [{"program": 3, "days": 48}]}}
    assert sc.needed_programs(got) == []
    assert sc.needed_programs({"calendar": {"default": 2, "rules": [{"program": 4, "days": 1}]}}) == [2, 4]
    assert sc.describe(got) == "set schedule (programs 0, 3 stored, 5 deleted; calendar)"
    assert sc.describe({"calendar": {"default": 0}}) == "set schedule (calendar)"


def test_writes_store_then_calendar_then_delete() -> None:
    """The node needs programs before the calendar that names them, and the calendar before a deletion."""
    params = sc.check_params({"programs": {"5": None, "1": DUSK},
                              "calendar": {"default": 1, "rules": [{"program": 1, "from": [12, 24], "to": [1, 2]}]}})
    writes = sc.writes(params)
    assert writes == [
        (lamp.PROGRAM_START, (1, 3, 2, 0, 100, 0, 1380, 50, 1, 0xFFE2, 0)),
        (lamp.CALENDAR_START, (1, 1, 0, 1224, 102) + (0,) * 28),
        (lamp.PROGRAM_START, (5, 0)),
    ]
    for address, words in writes:  # every word within the node's own bounds of its block
        for k, word in enumerate(words):
            lo, hi = lamp.block_bounds(address + k)
            signed = word - 0x10000 if lo < 0 and word & 0x8000 else word
            assert lo <= signed <= hi, (address + k, word)
    assert sc.select_run(7) == (lamp.PROGRAM_START, (7,))


@pytest.mark.parametrize(("params", "says"), [
    ({}, "needs 'programs', 'calendar' or both"),
    ({"program": {}}, "unexpected 'program'"),
    ({"programs": []}, "'programs' must be a map"),
    ({"programs": {"16": DUSK}}, "program id 16 is not one of 0..15"),
    ({"programs": {"03": DUSK}}, "key '03' is not a program id"),
    ({"programs": {"x": DUSK}}, "key 'x' is not a program id"),
    ({"programs": {1: DUSK, "1": DUSK}}, "program 1 is given twice"),
    ({"programs": {"2": [[0, 1500, 50]]}}, "program 2 point 0: FIXED time 1500"),
    ({"programs": {"2": [[0, m, 1] for m in range(17)]}}, "program 2: 17 points; the lamp keeps at most 16"),
    ({"programs": {"2": "dusk"}}, "program 2: expected a list"),
    ({"programs": {"2": None}}, "deleting program 2 needs the calendar in the same command"),
    ({"programs": {"2": None}, "calendar": {"default": 2}}, "the calendar uses program 2, which this command"),
    ({"calendar": {"default": 0, "rules": [{"program": 0, "days": 1}] * 9}}, "at most 8 rules"),
    ({"calendar": {"default": 0, "rules": [{"program": 0, "from": [2, 30], "to": [3, 1]}]}},
     "calendar rule 0: from: no such date"),
])
def test_refusals_say_what_is_wrong(params: dict[str, Any], says: str) -> None:
    assert says in problem(params)
