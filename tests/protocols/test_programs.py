# common-subset
"""The rules of programs and calendars that node and gateway share: each error names its place."""

from expect import raises

from protocols import programs as pg

DUSK_TO_DAWN = [[pg.SUNSET, 0, 100], [pg.FIXED, 23 * 60, 50], [pg.FIXED, 5 * 60, 100], [pg.SUNRISE, 0, 0]]


def _msg(fn, *args):
    return str(raises(ValueError, fn, *args))


def test_a_valid_program_passes():
    pg.validate_program(DUSK_TO_DAWN, 3)
    pg.validate_program([(pg.FIXED, 0, 0)], 0)  # tuples too: the node keeps programs as tuples
    pg.validate_program([[pg.SUNSET, -360, 1], [pg.SUNRISE, 360, 0]], 15)


def test_program_errors_name_the_program_and_point():
    assert "program 4 point 1: level 101" in _msg(pg.validate_program, [[0, 1, 1], [0, 2, 101]], 4)
    assert "program 0 point 0: kind 3" in _msg(pg.validate_program, [[3, 0, 0]], 0)
    assert "FIXED time 1440" in _msg(pg.validate_program, [[pg.FIXED, 1440, 0]], 0)
    assert "offset -361 from SUNRISE" in _msg(pg.validate_program, [[pg.SUNRISE, -361, 0]], 0)
    assert "offset True" in _msg(pg.validate_program, [[pg.SUNRISE, True, 0]], 0)
    assert "point 1: same time as point 0" in _msg(pg.validate_program, [[2, 5, 0], [2, 5, 100]], 0)
    assert "program 2: expected a list of 1..16" in _msg(pg.validate_program, [], 2)
    assert "program 2: expected a list of 1..16" in _msg(pg.validate_program, [[0, m, 0] for m in range(17)], 2)
    assert "programs: expected a list of 1..16" in _msg(pg.validate_programs, [DUSK_TO_DAWN] * 17)


def test_calendar_rules_and_limits():
    cal = {"default": 0, "rules": [{"program": 1, "days": 16 | 32}, {"program": 2, "from": [12, 24], "to": [1, 2]}]}
    pg.validate_calendar(cal, 3)
    assert pg.calendar_programs(cal) == [0, 1, 2]
    assert pg.calendar_programs({"default": 1, "rules": [{"program": 1, "days": 1}]}) == [1]
    assert "calendar rules: expected a list of at most 1 rules" in _msg(pg.validate_calendar, cal, 3, 1)
    assert "calendar rule 1: program 2 is not one of 0..1" in _msg(pg.validate_calendar, cal, 2)
    assert "calendar rule 0: days 0 is not a weekday mask" in _msg(
        pg.validate_calendar, {"default": 0, "rules": [{"program": 0, "days": 0}]}, 1)
    assert "calendar rule 0: from: no such date: month 2 day 30" in _msg(
        pg.validate_calendar, {"default": 0, "rules": [{"program": 0, "from": [2, 30], "to": [3, 1]}]}, 1)
    assert "calendar rule 0: from and to go together" in _msg(
        pg.validate_calendar, {"default": 0, "rules": [{"program": 0, "days": 1, "from": [2, 1]}]}, 1)
    assert "calendar: no default program" in _msg(pg.validate_calendar, {"rules": []}, 1)


def test_month_day():
    assert pg.month_day([2, 29], "") == 229
    assert pg.month_day((12, 31), "") == 1231
    assert "x: expected [month, day]" in _msg(pg.month_day, [12], "x: ")
    assert "no such date: month 4 day 31" in _msg(pg.month_day, [4, 31], "")


def test_photocell_override_and_place():
    pg.validate_photo({"on": 10, "off": 30, "level": 40})
    assert "need 0 <= on < off lux" in _msg(pg.validate_photo, {"on": 30, "off": 10})
    pg.validate_override([100, 1800000000.5])
    assert "override: until 'soon'" in _msg(pg.validate_override, [100, "soon"])
    pg.validate_place(52.37, 4.9, 60)
    assert "UTC offset 30.5" in _msg(pg.validate_place, 0, 0, 30.5)


def test_the_night_plan_numbers_switch_point_kinds_as_the_programs_do() -> None:
    """firmware.night_plan keeps its own copy of the kinds (a lamp need not hold protocols.programs' names
    while it lays out a night): the copy must not drift."""
    from firmware import night_plan

    assert (night_plan.FIXED, night_plan.SUNRISE, night_plan.SUNSET) == (pg.FIXED, pg.SUNRISE, pg.SUNSET)
