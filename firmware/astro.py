"""Astronomical clock of the lamp controller: sunrise, sunset, civil dawn and dusk.

Sans-IO: every function takes the date and the place as arguments and reads no
clock. Dates are proleptic Gregorian; day numbers count days since 1970-01-01
(``days_from_civil``), so the caller never needs the ``datetime`` module, which
MicroPython lacks.

The sun's position is the NOAA solar calculator's (low-precision Meeus terms,
the "Almanac for Computers" family, also used by the ``astral`` package): mean
longitude and anomaly, equation of centre, nutation in longitude, obliquity,
declination and equation of time. The time of an event is found by iterating
the hour-angle equation from the sun's place at noon; two corrections, each
with the sun's place at the previous estimate, bring it within a second of the
converged value.

Single precision: the ESP32 build of MicroPython has 32-bit floats (about 7
significant digits). A day count since J2000 held in one float would be coarse
(one step at 36,525 days is about 5 minutes), so the day stays an integer and
only the fraction of the day is a float. The mean longitude and anomaly advance
by ``n - k*n`` degrees a day (k small), so ``n % 360`` is taken exactly in
integers and only ``k*n`` (under 530 degrees this century) is a float; angles
are reduced modulo 360 before any trigonometry. Intermediate values stay under
about 1,300, where a 32-bit float still resolves 0.0001 degree.

Every float conversion goes through ``float(...)``: the CPython tests replace
that name (and the ``math`` functions) to replay this module in emulated 32-bit
arithmetic.
"""

from math import acos, asin, cos, sin, tan

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# sun_times() state: the sun rises and sets; stays above; stays below the chosen depression all day.
NORMAL = const(0)
ALWAYS_UP = const(1)
ALWAYS_DOWN = const(2)

# Depression of the sun's centre below the horizon, degrees.
SUNRISE_DEPRESSION = 0.833  # upper limb on the horizon: 16' radius + 34' refraction
CIVIL_DEPRESSION = 6.0

_J2000_DAY = const(10957)  # 2000-01-01 as a day number
_RAD = 0.017453292519943295
_DEG = 57.29577951308232
_MAX_LAT = 89.8  # the hour-angle equation divides by cos(latitude)


def days_from_civil(year, month, day):
    """Day number (days since 1970-01-01, negative before) of a Gregorian date."""
    year -= month <= 2
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def civil_from_days(days):
    """(year, month, day) of a day number; inverse of ``days_from_civil``."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (month <= 2), month, day)


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


def weekday(days):
    """Day of the week of a day number: 0 Monday .. 6 Sunday."""
    return (days + 3) % 7  # 1970-01-01 was a Thursday


def _sun(n, f):
    """(declination in radians, equation of time in minutes) at ``f`` days after 00:00 UTC of J2000 day ``n``.

    ``n`` is an int, ``f`` a float of a few days at most: their sum is never
    formed as one float (see the module docstring).
    """
    g = f - 0.5  # J2000.0 is 2000-01-01 12:00
    fn = float(n)
    t = (fn + g) / 36525.0  # Julian centuries: only slow terms use it
    whole = float(n % 360)
    # 36000.76983 and 35999.05029 degrees a century, written as one turn a day minus a small rate.
    l0 = (280.46646 + whole - 0.0143526398 * fn + 0.98564736 * g + 0.0003032 * t * t) % 360.0
    m = (357.52911 + whole - 0.0143997183 * fn + 0.98560028 * g - 0.0001537 * t * t) % 360.0
    mr = m * _RAD
    sm = sin(mr)
    c = (
        sm * (1.914602 - t * (0.004817 + 0.000014 * t))
        + sin(2.0 * mr) * (0.019993 - 0.000101 * t)
        + sin(3.0 * mr) * 0.000289
    )
    om = ((125.04 - 0.0529537577 * (fn + g)) % 360.0) * _RAD
    lam = (l0 + c - 0.00569 - 0.00478 * sin(om)) * _RAD
    sec = 21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))
    eps = (23.0 + (26.0 + sec / 60.0) / 60.0 + 0.00256 * cos(om)) * _RAD
    dec = asin(sin(eps) * sin(lam))
    e = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    y = tan(eps / 2.0)
    y *= y
    l2 = 2.0 * l0 * _RAD
    eot = (
        y * sin(l2)
        - 2.0 * e * sm
        + 4.0 * e * y * sm * cos(l2)
        - 0.5 * y * y * sin(2.0 * l2)
        - 1.25 * e * e * sin(2.0 * mr)
    )
    return dec, 4.0 * _DEG * eot


def _cos_hour_angle(lat, dec, h0):
    """Cosine of the hour angle at which the sun's centre is at altitude ``h0`` (radians)."""
    return (sin(h0) - sin(lat) * sin(dec)) / (cos(lat) * cos(dec))


def _event(n, lat, lon, h0, sign, t):
    """UTC minutes of sunrise (sign -1) or sunset (+1) for J2000 day ``n``, from estimate ``t``; radians."""
    for _ in range(2):
        dec, eot = _sun(n, t / 1440.0)
        c = _cos_hour_angle(lat, dec, h0)
        # Near the polar limits one end of the day may just graze: hold it at noon or midnight.
        c = 1.0 if c > 1.0 else -1.0 if c < -1.0 else c
        t = 720.0 - 4.0 * lon - eot + sign * 4.0 * _DEG * acos(c)
    return t


def sun_times_days(days, lat, lon, depression=SUNRISE_DEPRESSION):
    """``sun_times`` for a day number (days since 1970-01-01)."""
    lat = float(lat)
    lon = float(lon)
    lat = _MAX_LAT if lat > _MAX_LAT else -_MAX_LAT if lat < -_MAX_LAT else lat
    lat *= _RAD
    h0 = -float(depression) * _RAD
    n = days - _J2000_DAY
    noon = 720.0 - 4.0 * lon
    dec, eot = _sun(n, noon / 1440.0)
    c = _cos_hour_angle(lat, dec, h0)
    if c >= 1.0:
        return None, None, ALWAYS_DOWN
    if c <= -1.0:
        return None, None, ALWAYS_UP
    # The sun at noon gives estimates within minutes; two corrections at each event's own time settle them.
    noon -= eot
    ha = 4.0 * _DEG * acos(c)
    return _event(n, lat, lon, h0, -1, noon - ha), _event(n, lat, lon, h0, 1, noon + ha), NORMAL


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
    n = days - _J2000_DAY
    t = 720.0 - 4.0 * lon
    for _ in range(2):
        _, eot = _sun(n, t / 1440.0)
        t = 720.0 - 4.0 * lon - eot
    return t
