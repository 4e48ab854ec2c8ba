# common-subset
"""The lamp's calendar, programs, photocell and override: simulated nights, selection, safe fallbacks."""

from expect import raises

from firmware import astro
from firmware import schedule as sch

# "Dusk to dawn, 50 % from 23:00 to 05:00".
DUSK_TO_DAWN = [[sch.SUNSET, 0, 100], [sch.FIXED, 23 * 60, 50], [sch.FIXED, 5 * 60, 100], [sch.SUNRISE, 0, 0]]
ALL_NIGHT = [[sch.SUNSET, 0, 100], [sch.SUNRISE, 0, 0]]
CAL = {"default": 0}
PHOTO = {"on": 10, "off": 30}

AMSTERDAM = (52.37, 4.90)
BERGEN = (60.39, 5.32)  # June: sunset after 23:00, sunrise before 05:00
SYDNEY = (-33.87, 151.21)
QUITO = (-0.18, -78.47)
SUVA = (-18.14, 178.44)  # near the date line, UTC+12


def _epoch(y, m, d, hh, mm, tz):
    """Epoch seconds of local y-m-d hh:mm at UTC offset tz minutes."""
    return astro.days_from_civil(y, m, d) * 86400 + (hh * 60 + mm - tz) * 60


def _local_sun(day, tz, place):
    rise, set_, state = astro.sun_times_days(day, place[0], place[1])
    assert state == astro.NORMAL
    return rise + tz, set_ + tz


def _intended(now, tz, place):
    """What DUSK_TO_DAWN means, written straight from astro: off by day, 50 % 23:00-05:00, else 100 %."""
    local = now + tz * 60
    day = local // 86400
    t = (local - day * 86400) / 60
    rise, set_ = _local_sun(day, tz, place)
    if rise <= t < set_:
        return 0
    return 50 if t >= 1380 or t < 300 else 100


def _first_minute(t):
    """The first whole minute at or after t."""
    m = int(t)
    return m if m == t else m + 1


def _night(y, m, d, tz, place, programs=None):
    """Evaluate minute by minute from 12:00 on the date to 11:59 the next day; return the changes.

    Changes are ``(minute after local midnight of the date, level)``; every
    minute must match the intended meaning of DUSK_TO_DAWN.
    """
    programs = programs or [DUSK_TO_DAWN]
    start = _epoch(y, m, d, 12, 0, tz)
    changes = []
    prev = None
    for minute in range(1440):
        now = start + minute * 60
        level, source = sch.level_at(now, tz, place[0], place[1], CAL, programs)
        assert source == sch.PROGRAM
        assert level == _intended(now, tz, place), (y, m, d, place, 720 + minute, level)
        if level != prev:
            if prev is not None:
                changes.append((720 + minute, level))
            prev = level
    return changes


def test_winter_night_in_amsterdam():
    """Dec 21: on at sunset, 50 % at 23:00, 100 % at 05:00, off at sunrise (times from astro.sun_times)."""
    tz = 60
    day = astro.days_from_civil(2024, 12, 21)
    sunset = _local_sun(day, tz, AMSTERDAM)[1]
    sunrise = _local_sun(day + 1, tz, AMSTERDAM)[0]
    assert _night(2024, 12, 21, tz, AMSTERDAM) == [
        (_first_minute(sunset), 100),
        (23 * 60, 50),
        (1440 + 5 * 60, 100),
        (1440 + _first_minute(sunrise), 0),
    ]


def test_summer_night_in_amsterdam():
    """Jun 21 (summer time): the same four steps in a short night."""
    tz = 120
    day = astro.days_from_civil(2024, 6, 21)
    sunset = _local_sun(day, tz, AMSTERDAM)[1]
    sunrise = _local_sun(day + 1, tz, AMSTERDAM)[0]
    assert sunset < 23 * 60 and sunrise > 5 * 60
    assert _night(2024, 6, 21, tz, AMSTERDAM) == [
        (_first_minute(sunset), 100),
        (23 * 60, 50),
        (1440 + 5 * 60, 100),
        (1440 + _first_minute(sunrise), 0),
    ]


def test_summer_night_in_bergen_sun_outruns_the_fixed_points():
    """Sunset after 23:00 and sunrise before 05:00: straight to 50 % at sunset, off at sunrise, never 100 %."""
    tz = 120
    day = astro.days_from_civil(2024, 6, 21)
    sunset = _local_sun(day, tz, BERGEN)[1]
    sunrise = _local_sun(day + 1, tz, BERGEN)[0]
    assert sunset > 23 * 60 and sunrise < 5 * 60
    assert _night(2024, 6, 21, tz, BERGEN) == [(_first_minute(sunset), 50), (1440 + _first_minute(sunrise), 0)]


def test_nights_south_of_the_equator_and_near_the_date_line():
    """Sydney in its winter, Quito, Suva: every minute means what the program says."""
    assert len(_night(2025, 6, 21, 600, SYDNEY)) == 4
    assert len(_night(2025, 3, 1, -300, QUITO)) == 4
    assert len(_night(2031, 8, 8, 720, SUVA)) == 4


def test_a_year_of_nights_sampled():
    """Every 11th night of 2025 at five places, every 37 minutes: level is always the intended one."""
    places = ((AMSTERDAM, 60), (BERGEN, 60), (SYDNEY, 600), (QUITO, -300), (SUVA, 720))
    first = astro.days_from_civil(2025, 1, 1)
    for place, tz in places:
        for day in range(first, first + 365, 11):
            start = day * 86400 - tz * 60
            for minute in range(0, 1440, 37):
                now = start + minute * 60
                level, source = sch.level_at(now, tz, place[0], place[1], CAL, [DUSK_TO_DAWN])
                assert (level, source) == (_intended(now, tz, place), sch.PROGRAM), (place, day, minute)


def test_fixed_only_and_single_point_programs():
    """18:00 on, 07:00 off without any astronomy; a one-point program is constant."""
    programs = [[[sch.FIXED, 18 * 60, 100], [sch.FIXED, 7 * 60, 0]], [[sch.FIXED, 0, 35]]]
    for hh, expected in ((6, 100), (7, 0), (12, 0), (17, 0), (18, 100), (23, 100), (0, 100)):
        assert sch.level_at(_epoch(2025, 4, 2, hh, 0, 0), 0, 10.0, 0.0, CAL, programs) == (expected, sch.PROGRAM)
    for hh in (0, 11, 12, 13, 23):
        assert sch.level_at(_epoch(2025, 4, 2, hh, 0, 0), 0, 10.0, 0.0, {"default": 1}, programs)[0] == 35


def test_offsets_from_sunset_and_sunrise():
    """30 min before sunset to 20 %, 15 min after sunrise off; a point five hours before sunset falls before noon."""
    tz = 60
    day = astro.days_from_civil(2025, 1, 15)
    rise, set_ = _local_sun(day, tz, AMSTERDAM)
    programs = [[[sch.SUNSET, -300, 20], [sch.SUNSET, -30, 60], [sch.SUNSET, 0, 100], [sch.SUNRISE, 15, 0]]]
    base = day * 86400 - tz * 60

    def at(minute):
        return sch.level_at(base + int(minute * 60), tz, AMSTERDAM[0], AMSTERDAM[1], CAL, programs)[0]

    assert set_ - 300 < 720  # the 20 % point belongs to this evening's night but comes before 12:00
    assert at(set_ - 301) == 0
    assert at(set_ - 299) == 20
    assert at(set_ - 29) == 60
    assert at(set_ + 1) == 100
    assert at(rise + 14) == 100  # the previous night still
    assert at(rise + 16) == 0


def test_switch_times_are_in_order_everywhere():
    """For any day, place and extreme offsets the night's switch times never go backwards."""
    programs = [
        DUSK_TO_DAWN,
        [[sch.SUNSET, 360, 10], [sch.SUNRISE, -360, 20], [sch.FIXED, 0, 30], [sch.FIXED, 720, 40],
         [sch.SUNSET, -360, 50]],
    ]
    for pid in (0, 1):
        cal = {"default": pid}
        for lat in (-75, -60, -20, 0, 35, 60, 75):
            for lon, tz in ((-150, -600), (0, 0), (120, 480)):
                for day in range(astro.days_from_civil(2024, 1, 1), astro.days_from_civil(2025, 1, 1), 23):
                    times = sch.switch_times(day, tz, lat, lon, cal, programs)
                    assert len(times) == len(programs[pid])
                    for i in range(1, len(times)):
                        assert times[i][0] >= times[i - 1][0], (pid, lat, lon, day, times)


def test_polar_day_and_night_keep_their_level():
    """70 N: off all day and night around midsummer; lit all day around midwinter (dimmed 23:00-05:00)."""
    for hh in range(24):
        assert sch.level_at(_epoch(2024, 6, 21, hh, 30, 60), 60, 70.0, 19.0, CAL, [DUSK_TO_DAWN])[0] == 0
        level = sch.level_at(_epoch(2024, 12, 21, hh, 30, 60), 60, 70.0, 19.0, CAL, [DUSK_TO_DAWN])[0]
        assert level == (50 if hh >= 23 or hh < 5 else 100), (hh, level)


def test_polar_night_daytime_points_do_not_dim():
    """70 N in December: fixed points meant for the day (13:00, 11:00) never dim a lamp in the polar night."""
    programs = [
        [[sch.FIXED, 13 * 60, 30], [sch.SUNSET, 0, 100], [sch.SUNRISE, 0, 0]],
        [[sch.SUNSET, 0, 100], [sch.SUNRISE, 0, 0], [sch.FIXED, 11 * 60, 40]],
    ]
    for pid in (0, 1):
        for tz in (-60, 180):  # mean solar noon at 09:44 and at 13:44
            for minute in range(0, 2880, 10):
                now = _epoch(2024, 12, 20, 0, minute, tz)
                level = sch.level_at(now, tz, 70.0, 19.0, {"default": pid}, programs)
                assert level == (100, sch.PROGRAM), (pid, tz, minute, level)


# --- calendar -----------------------------------------------------------------------------------------

HOLIDAY_CAL = {
    "default": 0,
    "rules": [
        {"program": 1, "days": sch.FRIDAY | sch.SATURDAY},
        {"program": 2, "from": [12, 24], "to": [1, 2]},
        {"program": 3, "from": [12, 31], "to": [12, 31]},
        {"program": 4, "from": [7, 1], "to": [8, 31], "days": sch.SUNDAY},
    ],
}


def _pid(y, m, d):
    return sch.program_for(HOLIDAY_CAL, astro.days_from_civil(y, m, d))


def test_weekday_rules():
    """Friday and Saturday nights take program 1, other nights the default."""
    assert [_pid(2025, 1, d) for d in range(6, 13)] == [0, 0, 0, 0, 1, 1, 0]  # Mon 6 .. Sun 12


def test_date_ranges_wrap_the_new_year_and_later_rules_win():
    """Dec 24 - Jan 2 beats the weekend rule; Dec 31 beats both; a range and a weekday together."""
    assert _pid(2024, 12, 23) == 0
    assert _pid(2024, 12, 24) == 2
    assert _pid(2024, 12, 27) == 2  # a Friday
    assert _pid(2024, 12, 31) == 3
    assert _pid(2025, 1, 1) == 2
    assert _pid(2025, 1, 2) == 2
    assert _pid(2025, 1, 3) == 1  # Friday after the holidays
    assert _pid(2025, 7, 6) == 4  # a Sunday in July
    assert _pid(2025, 7, 7) == 0
    assert _pid(2025, 9, 7) == 0  # a Sunday after the range
    assert sch.program_for({"default": 2}, 20000) == 2


def test_a_night_keeps_its_program_after_midnight():
    """The Friday-night program holds until Saturday noon; Sunday night dims again."""
    programs = [DUSK_TO_DAWN, ALL_NIGHT, ALL_NIGHT, ALL_NIGHT, ALL_NIGHT]
    tz = 60

    def level(d, hh):
        return sch.level_at(_epoch(2025, 1, d, hh, 30, tz), tz, AMSTERDAM[0], AMSTERDAM[1], HOLIDAY_CAL, programs)

    assert level(9, 23) == (50, sch.PROGRAM)  # Thursday night
    assert level(10, 2) == (50, sch.PROGRAM)  # still Thursday's night
    assert level(10, 23) == (100, sch.PROGRAM)  # Friday night: no dimming
    assert level(11, 2) == (100, sch.PROGRAM)  # Friday's night at 02:30 on Saturday
    assert level(12, 23) == (50, sch.PROGRAM)  # Sunday night
    assert level(13, 2) == (50, sch.PROGRAM)


# --- override, photocell, safe state --------------------------------------------------------------------


def test_override_until_expiry():
    """An override holds until its expiry second, then the program takes over again."""
    now = _epoch(2025, 1, 15, 23, 30, 60)
    until = now + 3600
    args = (60, AMSTERDAM[0], AMSTERDAM[1], CAL, [DUSK_TO_DAWN])
    assert sch.level_at(now, *args, override=[20, until]) == (20, sch.OVERRIDE)
    assert sch.level_at(until - 1, *args, override=[20, until]) == (20, sch.OVERRIDE)
    assert sch.level_at(until, *args, override=(20, until)) == (50, sch.PROGRAM)
    assert sch.level_at(now, *args, override=[0, until], lux=0, photo=PHOTO) == (0, sch.OVERRIDE)


def test_photocell_hysteresis():
    """Dark below 10 lux, light above 30, the band keeps the state; no reading keeps it too."""
    dark = None
    states = []
    for lux in (50, 25, 15, 9, 12, 25, 30, None, 31, 20, 10, 9.5):
        dark = sch.photocell_override(lux, dark, PHOTO)
        states.append(dark)
    assert states == [False, False, False, True, True, True, True, True, False, False, False, True]
    assert sch.photocell_override(20, None, PHOTO) is None
    assert sch.photocell_override(5, False, None) is False


def test_photocell_lights_a_lamp_the_program_has_off():
    """A storm at 15:00 lights the lamp; light never dims or switches off what the program lit."""
    tz = 60
    args = (tz, AMSTERDAM[0], AMSTERDAM[1], CAL, [DUSK_TO_DAWN])
    afternoon = _epoch(2025, 6, 10, 15, 0, tz)
    late = _epoch(2025, 6, 10, 23, 30, tz)
    assert sch.level_at(afternoon, *args) == (0, sch.PROGRAM)
    assert sch.level_at(afternoon, *args, lux=5, photo=PHOTO) == (100, sch.PHOTOCELL)
    assert sch.level_at(afternoon, *args, lux=20, photo=PHOTO, dark=True) == (100, sch.PHOTOCELL)
    assert sch.level_at(afternoon, *args, lux=20, photo=PHOTO, dark=False) == (0, sch.PROGRAM)
    assert sch.level_at(afternoon, *args, lux=5, photo={"on": 10, "off": 30, "level": 60}) == (60, sch.PHOTOCELL)
    assert sch.level_at(afternoon, *args, lux=None, photo=PHOTO) == (0, sch.PROGRAM)
    assert sch.level_at(late, *args, lux=2, photo=PHOTO) == (50, sch.PROGRAM)  # dimming at night stays
    assert sch.level_at(late, *args, lux=5000, photo=PHOTO) == (50, sch.PROGRAM)  # a torch on the cell


def test_safe_level():
    """Lit unless a working photocell sees daylight; an unknown state counts as dark."""
    assert sch.safe_level() == 100
    assert sch.safe_level(1000) == 100  # no photocell settings
    assert sch.safe_level(None, PHOTO) == 100  # no reading
    assert sch.safe_level(1000, PHOTO) == 0
    assert sch.safe_level(5, PHOTO) == 100
    assert sch.safe_level(20, PHOTO) == 100  # in the band after power-up
    assert sch.safe_level(20, PHOTO, False) == 0
    assert sch.safe_level(5, {"on": 10, "off": 30, "level": 70}) == 70
    assert sch.safe_level(1000, {"on": 30, "off": 10}) == 100  # invalid photocell: lit


def test_no_valid_clock_gives_the_safe_level():
    """Unset clock (None, 1970, the ESP32's 2000 epoch, 2100): safe level, override ignored."""
    args = (60, AMSTERDAM[0], AMSTERDAM[1], CAL, [DUSK_TO_DAWN])
    for now in (None, 0, 946684800 + 3600, 1577836799, 4102444800, "2025-01-01", 1.5e9):
        assert sch.level_at(now, *args) == (100, sch.DEFAULT_SAFE), now
        assert sch.level_at(now, *args, override=[0, 5000000000]) == (100, sch.DEFAULT_SAFE)
    assert sch.level_at(None, *args, lux=1000, photo=PHOTO) == (0, sch.DEFAULT_SAFE)
    assert sch.time_valid(1577836800) and not sch.time_valid(True)


def test_invalid_settings_give_the_safe_level_and_say_so():
    """Anything wrong in the settings: safe level, source INVALID, never an exception."""
    now = _epoch(2025, 1, 15, 15, 0, 60)
    good = (60, 52.37, 4.9, CAL, [DUSK_TO_DAWN])
    assert sch.level_at(now, *good) == (0, sch.PROGRAM)
    bad_cases = (
        (60, 52.37, 4.9, CAL, None),
        (60, 52.37, 4.9, CAL, []),
        (60, 52.37, 4.9, CAL, [[[sch.SUNSET, 0, 150]]]),
        (60, 52.37, 4.9, CAL, [[[sch.SUNSET, 0]]]),
        (60, 52.37, 4.9, CAL, [[]]),
        (60, 52.37, 4.9, CAL, [[[9, 0, 10]]]),
        (60, 52.37, 4.9, {"default": 1}, [DUSK_TO_DAWN]),
        (60, 52.37, 4.9, {"default": 0, "rules": [{"program": 3, "days": 1}]}, [DUSK_TO_DAWN]),
        (60, 52.37, 4.9, None, [DUSK_TO_DAWN]),
        (60, "52.37", 4.9, CAL, [DUSK_TO_DAWN]),
        (60, 52.37, 200, CAL, [DUSK_TO_DAWN]),
        (60.5, 52.37, 4.9, CAL, [DUSK_TO_DAWN]),
        (None, 52.37, 4.9, CAL, [DUSK_TO_DAWN]),
        (60, 52.37, 4.9, CAL, "programs"),
        (60, 52.37, 4.9, CAL, {0: DUSK_TO_DAWN}),
    )
    for case in bad_cases:
        assert sch.level_at(now, *case) == (100, sch.INVALID), case
        assert sch.level_at(now, *case, lux=1000, photo=PHOTO) == (0, sch.INVALID), case  # daylight seen: off
    assert sch.level_at(now, *good, override=[101, now + 60]) == (100, sch.INVALID)
    assert sch.level_at(now, *good, override=[50]) == (100, sch.INVALID)
    assert sch.level_at(now, *good, override=[50, "soon"]) == (100, sch.INVALID)
    assert sch.level_at(now, *good, lux=1000, photo={"on": 5}) == (100, sch.INVALID)
    assert sch.level_at(now, *good, lux=1000, photo=[10, 30]) == (100, sch.INVALID)


# --- validation messages ------------------------------------------------------------------------------


def _msg(fn, *args):
    return str(raises(ValueError, fn, *args))


def test_validate_programs_names_program_and_point():
    """Each error says which program, which point and what is wrong."""
    sch.validate_programs([DUSK_TO_DAWN, ALL_NIGHT, [(sch.FIXED, 0, 0)]])
    assert "program 1 point 0: level 120" in _msg(sch.validate_programs, [DUSK_TO_DAWN, [[sch.FIXED, 60, 120]]])
    assert "program 0 point 2: kind 7" in _msg(sch.validate_programs, [[[0, 1, 1], [0, 2, 2], [7, 0, 0]]])
    assert "FIXED time 1440" in _msg(sch.validate_programs, [[[sch.FIXED, 1440, 0]]])
    assert "FIXED time -1" in _msg(sch.validate_programs, [[[sch.FIXED, -1, 0]]])
    assert "offset 400 from SUNSET" in _msg(sch.validate_programs, [[[sch.SUNSET, 400, 0]]])
    assert "offset -361 from SUNRISE" in _msg(sch.validate_programs, [[[sch.SUNRISE, -361, 0]]])
    assert "offset 1.5" in _msg(sch.validate_programs, [[[sch.SUNRISE, 1.5, 0]]])
    assert "level 50.0" in _msg(sch.validate_programs, [[[sch.SUNRISE, 0, 50.0]]])
    assert "level True" in _msg(sch.validate_programs, [[[sch.SUNRISE, 0, True]]])
    assert "program 0 point 1: same time as point 0" in _msg(sch.validate_programs, [[[2, 5, 0], [2, 5, 100]]])
    assert "program 0 point 0: expected [kind, offset, level]" in _msg(sch.validate_programs, [[[0, 1]]])
    assert "program 2: expected a list of 1..16" in _msg(sch.validate_programs, [ALL_NIGHT, ALL_NIGHT, []])
    assert "program 0: expected a list" in _msg(sch.validate_programs, [[[sch.FIXED, m, 0] for m in range(17)]])
    assert "programs: expected a list of 1..16" in _msg(sch.validate_programs, [ALL_NIGHT] * 17)
    assert "programs: expected" in _msg(sch.validate_programs, None)


def test_validate_calendar_names_the_rule():
    """Calendar errors name the rule and the field."""
    sch.validate_calendar(HOLIDAY_CAL, 5)
    sch.validate_calendar({"default": 0, "rules": []}, 1)
    assert "calendar default: program 5 is not one of 0..4" in _msg(sch.validate_calendar, {"default": 5}, 5)
    assert "calendar: no default" in _msg(sch.validate_calendar, {"rules": []}, 5)
    assert "calendar: unknown key 'rule'" in _msg(sch.validate_calendar, {"default": 0, "rule": []}, 1)
    assert "calendar: expected" in _msg(sch.validate_calendar, [0], 1)
    assert "calendar rules: expected a list" in _msg(sch.validate_calendar, {"default": 0, "rules": {}}, 1)

    def rule(r):
        return _msg(sch.validate_calendar, {"default": 0, "rules": [{"program": 0, "days": 1}, r]}, 2)

    assert "calendar rule 1: unknown key 'day'" in rule({"program": 0, "day": 1})
    assert "calendar rule 1: no program" in rule({"days": 1})
    assert "calendar rule 1: program 2 is not one of 0..1" in rule({"program": 2, "days": 1})
    assert "calendar rule 1: selects nothing" in rule({"program": 1})
    assert "calendar rule 1: days 0 is not a weekday mask" in rule({"program": 1, "days": 0})
    assert "days 128" in rule({"program": 1, "days": 128})
    assert "calendar rule 1: from and to go together" in rule({"program": 1, "from": [1, 1]})
    assert "calendar rule 1: to: no such date: month 2 day 30" in rule({"program": 1, "from": [2, 1], "to": [2, 30]})
    assert "from: no such date: month 13" in rule({"program": 1, "from": [13, 1], "to": [1, 1]})
    assert "from: expected [month, day]" in rule({"program": 1, "from": "12-24", "to": [1, 1]})
    assert "calendar rule 1: expected a dict" in rule([1, 0])
    sch.validate_calendar({"default": 0, "rules": [{"program": 0, "from": [2, 29], "to": [3, 1]}]}, 1)


def test_validate_photo_override_and_place():
    """Photocell thresholds, override and place are checked with precise messages."""
    sch.validate_photo(PHOTO)
    sch.validate_photo({"on": 0, "off": 0.5, "level": 1})
    assert "need 0 <= on < off lux, got on 30 off 30" in _msg(sch.validate_photo, {"on": 30, "off": 30})
    assert "on -1" in _msg(sch.validate_photo, {"on": -1, "off": 30})
    assert "photocell: unknown key 'of'" in _msg(sch.validate_photo, {"on": 1, "of": 30})
    assert "photocell: level 0" in _msg(sch.validate_photo, {"on": 1, "off": 30, "level": 0})
    sch.validate_override([0, 1700000000])
    assert "override: level -1" in _msg(sch.validate_override, [-1, 1700000000])
    assert "override: expected [level, until]" in _msg(sch.validate_override, 50)
    sch.validate_place(-90, 180, -720)
    assert "latitude 91" in _msg(sch.validate_place, 91, 0, 0)
    assert "longitude 'x'" in _msg(sch.validate_place, 0, "x", 0)
    assert "UTC offset 900" in _msg(sch.validate_place, 0, 0, 900)
