"""Astronomical clock of the lamp controller: sunrise, sunset, civil dawn and dusk.

Sans-IO: every function takes the date and the place as arguments and reads no
clock. Dates are proleptic Gregorian; day numbers count days since 1970-01-01
(``days_from_civil``), so the caller never needs the ``datetime`` module, which
MicroPython lacks.

The sun's computation (the NOAA solar calculator's terms, in single precision
on the ESP32) is :mod:`firmware.almanac`'s, with the day's date and weekday: a
lamp's night plan imports that module alone, so a running lamp does not hold
this module's names. This module is the whole API (the gateway's, the tests'
and ``firmware.schedule``'s): dates from a calendar, the sun's times by date,
civil twilight, solar noon.
"""

# The almanac's part of this API.
from firmware.almanac import (
    ALWAYS_DOWN,
    ALWAYS_UP,
    J2000_DAY,
    NORMAL,
    SUNRISE_DEPRESSION,
    civil_from_days,
    sun_position,
    sun_times_days,
    weekday,
)

__all__ = ["ALWAYS_DOWN", "ALWAYS_UP", "CIVIL_DEPRESSION", "J2000_DAY", "NORMAL", "SUNRISE_DEPRESSION",
           "civil_from_days", "day_of_year", "days_from_civil", "days_in_month", "is_leap", "solar_noon_days",
           "sun_position", "sun_times", "sun_times_days", "weekday"]

# Depression of the sun's centre below the horizon at civil dawn and dusk, degrees (SUNRISE_DEPRESSION: 0.833).
CIVIL_DEPRESSION = 6.0


def days_from_civil(year, month, day):
    """Day number (days since 1970-01-01, negative before) of a Gregorian date."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def is_leap(year):
    """True for a Gregorian leap year."""
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def days_in_month(year, month):
    """Number of days of ``month`` (1..12) in ``year``."""
    if month == 2:
        return 29 if is_leap(year) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def day_of_year(year, month, day):
    """1 for January 1st, 365 or 366 for December 31st."""
    return days_from_civil(year, month, day) - days_from_civil(year, 1, 1) + 1


def sun_times(year, month, day, lat, lon, depression=SUNRISE_DEPRESSION):
    """Sunrise and sunset of a date at a place, in minutes after 00:00 UTC of that date.

    ``lat`` degrees north (south negative), ``lon`` degrees east (west
    negative); ``depression`` is how far below the horizon the sun's centre is
    at the event, in degrees: ``SUNRISE_DEPRESSION`` (0.833, the default) for
    sunrise and sunset, ``CIVIL_DEPRESSION`` (6) for civil dawn and dusk.

    Returns ``(rise, set, state)``. With ``state == NORMAL`` rise and set are
    floats; they belong to the solar day of that date at that longitude, so far
    from Greenwich they may be below 0 or at or above 1440 (the event falls on
    the UTC day before or after). Where the sun never crosses that depression
    on that day, rise and set are None and ``state`` is ``ALWAYS_UP`` (polar
    day; for twilight, a white night) or ``ALWAYS_DOWN`` (polar night).
    Latitudes beyond 89.8 degrees are computed as 89.8.
    """
    return sun_times_days(days_from_civil(year, month, day), lat, lon, depression)


def solar_noon_days(days, lon):
    """UTC minutes of solar noon (the sun due south or north) on a day number at longitude ``lon``."""
    lon = float(lon)
    n = days - J2000_DAY
    t = 720.0 - 4.0 * lon
    for _ in range(2):
        _, eot = sun_position(n, t / 1440.0)
        t = 720.0 - 4.0 * lon - eot
    return t
