# common-subset
"""The lamp's astronomical clock: calendar arithmetic, sunrise and sunset, polar days."""

from firmware import astro

# (date, lat, lon, sunrise, sunset) in minutes after 00:00 UTC of the date, from the astral 3.2 almanac
# (tests/firmware/test_astro_almanac.py compares whole grids on CPython). astral puts the sun's upper limb
# 0.789 degrees below the horizon where we use the almanacs' 0.833: we rise up to ~0.7 min earlier.
ASTRAL = (
    ((2024, 12, 21), 52.37, 4.90, 468.8, 928.7),
    ((2024, 6, 21), 52.37, 4.90, 198.5, 1206.1),
    ((2000, 1, 1), 0.00, 0.00, 359.8, 1086.9),
    ((2024, 2, 29), -33.87, 151.21, -257.6, 512.4),
    ((2025, 3, 20), 40.71, -74.01, 659.1, 1388.2),
    ((2063, 9, 23), -60.00, -68.30, 618.0, 1354.4),
    ((2099, 12, 31), 60.00, 24.94, 443.2, 803.3),
    ((2037, 7, 4), 35.68, 139.69, -269.3, 600.5),
    ((2050, 11, 11), -23.55, -46.63, 495.2, 1286.1),
    ((2088, 5, 17), 64.10, -21.90, 244.8, 1366.0),
    ((2100, 2, 28), -45.00, -179.50, 1054.5, 1845.2),
    ((2031, 8, 8), 12.50, 179.90, -372.1, 384.3),
)


def test_days_from_civil_known_dates():
    """Day numbers of a few dates, counted from 1970-01-01."""
    assert astro.days_from_civil(1970, 1, 1) == 0
    assert astro.days_from_civil(1969, 12, 31) == -1
    assert astro.days_from_civil(2000, 1, 1) == 10957
    assert astro.days_from_civil(2000, 3, 1) == 11017  # 2000 is a leap year
    assert astro.days_from_civil(2024, 6, 1) == 19875
    assert astro.days_from_civil(2100, 3, 1) - astro.days_from_civil(2100, 2, 28) == 1  # 2100 is not


def test_civil_from_days_round_trips_two_centuries():
    """Every day from 1999 to 2101 converts to a date and back, and dates follow each other."""
    prev = astro.civil_from_days(astro.days_from_civil(1999, 1, 1) - 1)
    assert prev == (1998, 12, 31)
    for days in range(astro.days_from_civil(1999, 1, 1), astro.days_from_civil(2102, 1, 1)):
        y, m, d = astro.civil_from_days(days)
        assert astro.days_from_civil(y, m, d) == days
        if d == 1:
            assert prev[2] == astro.days_in_month(prev[0], prev[1])
            assert (y, m) == ((prev[0] + 1, 1) if prev[1] == 12 else (prev[0], prev[1] + 1))
        else:
            assert (y, m, d - 1) == prev
        prev = (y, m, d)


def test_leap_years_and_month_lengths():
    """Gregorian leap years; February and the 30-day months."""
    assert astro.is_leap(2000) and astro.is_leap(2024)
    assert not astro.is_leap(1900) and not astro.is_leap(2100) and not astro.is_leap(2025)
    assert astro.days_in_month(2024, 2) == 29
    assert astro.days_in_month(2100, 2) == 28
    assert [astro.days_in_month(2025, m) for m in range(1, 13)] == [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_day_of_year():
    """January 1st is day 1; December 31st is 366 in a leap year."""
    assert astro.day_of_year(2025, 1, 1) == 1
    assert astro.day_of_year(2024, 12, 31) == 366
    assert astro.day_of_year(2023, 12, 31) == 365
    assert astro.day_of_year(2024, 3, 1) == 61
    assert astro.day_of_year(2100, 3, 1) == 60


def test_weekday_monday_is_zero():
    """1970-01-01 was a Thursday, 2024-01-01 a Monday, 2024-06-01 a Saturday."""
    assert astro.weekday(0) == 3
    assert astro.weekday(astro.days_from_civil(2024, 1, 1)) == 0
    assert astro.weekday(astro.days_from_civil(2024, 6, 1)) == 5
    assert astro.weekday(-1) == 2


def test_sunrise_sunset_match_astral_within_a_minute():
    """Places from 60 S to 64 N, both date-line sides, 2000-2100: within 1 minute of astral."""
    for (y, m, d), lat, lon, rise, set_ in ASTRAL:
        r, s, state = astro.sun_times(y, m, d, lat, lon)
        assert state == astro.NORMAL
        assert abs(r - rise) < 1.0, ((y, m, d), lat, lon, r, rise)
        assert abs(s - set_) < 1.0, ((y, m, d), lat, lon, s, set_)
        assert r < s


def test_day_lengths_at_equinox_and_solstices():
    """About 12 h everywhere at an equinox; 16 h 48 min and 7 h 40 min at Amsterdam's solstices."""
    for lat in (-55, -30, 0, 30, 55):
        r, s, _ = astro.sun_times(2025, 3, 20, lat, 10)
        assert 720 < s - r < 735, (lat, s - r)
    r, s, _ = astro.sun_times(2024, 6, 21, 52.37, 4.9)
    assert abs((s - r) - (16 * 60 + 48)) < 3
    r, s, _ = astro.sun_times(2024, 12, 21, 52.37, 4.9)
    assert abs((s - r) - (7 * 60 + 40)) < 3


def test_civil_twilight_brackets_sunrise_and_sunset():
    """Civil dawn comes 25-80 minutes before sunrise and dusk as long after sunset (mid latitudes)."""
    for lat in (-50, -20, 0, 20, 50):
        for month in (1, 4, 7, 10):
            r, s, _ = astro.sun_times(2030, month, 15, lat, -3.0)
            dawn, dusk, state = astro.sun_times(2030, month, 15, lat, -3.0, astro.CIVIL_DEPRESSION)
            assert state == astro.NORMAL
            assert 20 < r - dawn < 80, (lat, month, r - dawn)
            assert 20 < dusk - s < 80, (lat, month, dusk - s)


def test_polar_day_and_night():
    """Midnight sun and polar night in both hemispheres; white nights for twilight near 62 N."""
    assert astro.sun_times(2024, 6, 21, 70, 25) == (None, None, astro.ALWAYS_UP)
    assert astro.sun_times(2024, 12, 21, 70, 25) == (None, None, astro.ALWAYS_DOWN)
    assert astro.sun_times(2024, 6, 21, -70, 25)[2] == astro.ALWAYS_DOWN
    assert astro.sun_times(2024, 12, 21, -70, 25)[2] == astro.ALWAYS_UP
    assert astro.sun_times(2024, 6, 21, 62, 25)[2] == astro.NORMAL
    assert astro.sun_times(2024, 6, 21, 62, 25, astro.CIVIL_DEPRESSION)[2] == astro.ALWAYS_UP
    assert astro.sun_times(2024, 6, 21, 90, 0)[2] == astro.ALWAYS_UP  # held at 89.8, no division by zero
    assert astro.sun_times(2024, 6, 21, -90, 0)[2] == astro.ALWAYS_DOWN


def test_events_may_fall_on_the_utc_day_before_or_after():
    """The date line: the same place at -180 and +180 degrees gives the same instants, one date apart."""
    for days in (11000, 20000, 40000):
        for lat in (-40, 0, 50):
            west = astro.sun_times_days(days, lat, -180)
            east = astro.sun_times_days(days + 1, lat, 180)
            assert abs(west[0] - (east[0] + 1440)) < 0.01
            assert abs(west[1] - (east[1] + 1440)) < 0.01
            assert east[0] < 0 < east[1] < 1440 < west[1]


def test_sun_times_vary_smoothly_day_to_day():
    """Sunrise and sunset move by under 4 minutes a day at 60 degrees (no jumps, no wrap): 12 over 3 days."""
    for lat in (-60, 60):
        prev = astro.sun_times_days(astro.days_from_civil(2024, 1, 1), lat, 100.0)
        for days in range(astro.days_from_civil(2024, 1, 2), astro.days_from_civil(2025, 1, 1), 3):
            cur = astro.sun_times_days(days, lat, 100.0)
            assert abs(cur[0] - prev[0]) < 12 and abs(cur[1] - prev[1]) < 12, (days, cur, prev)
            prev = cur


def test_solar_noon_follows_the_equation_of_time():
    """Solar noon at Greenwich: 12:03 on Jan 1, 11:44 early November (equation of time)."""
    assert abs(astro.solar_noon_days(astro.days_from_civil(2025, 1, 1), 0.0) - 723.5) < 1
    assert abs(astro.solar_noon_days(astro.days_from_civil(2025, 11, 3), 0.0) - 703.6) < 1
    r, s, _ = astro.sun_times(2025, 5, 5, 45.0, 7.5)
    assert abs((r + s) / 2 - astro.solar_noon_days(astro.days_from_civil(2025, 5, 5), 7.5)) < 1
