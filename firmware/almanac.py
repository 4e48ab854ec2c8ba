"""The lamp's almanac: a day number's date and weekday, and the sun's rise and set on that day.

What a lamp's night plan (``firmware.night_plan``) calls, and nothing else: a
lamp interns every name of the modules it ever imports, so the rest of the
astronomical clock (dates from a calendar, solar noon, the sun's times by
date) stays in :mod:`firmware.astro`, which builds on this module and is
what the gateway and the tests call. Day numbers count days since
1970-01-01 (``astro.days_from_civil``).

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
arithmetic. Whole-number constants are written as integers (``% 360``, ``2 *``):
the result is the same float, and a float literal is an object in the node's
heap while the module is loaded, where a small integer is none.
"""

from math import acos, asin, cos, sin, tan

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# sun_times_days() state: the sun rises and sets; stays above; stays below the chosen depression all day.
NORMAL = const(0)
ALWAYS_UP = const(1)
ALWAYS_DOWN = const(2)

# Depression of the sun's centre below the horizon, degrees: upper limb on the horizon (16' radius + 34' refraction).
SUNRISE_DEPRESSION = 0.833

J2000_DAY = const(10957)  # 2000-01-01 as a day number
_RAD = 0.017453292519943295
_DEG = 57.29577951308232
_MAX_LAT = 89.8  # the hour-angle equation divides by cos(latitude)
# sun_position()'s decimal coefficients, in the order it unpacks them. Each float literal of a function is a
# 32-byte object in the heap for as long as its module is loaded (the whole of a night's planning); one string
# is one object, and its numbers exist as floats only while sun_position runs.
_TERMS = (
    "280.46646 0.0143526398 0.98564736 0.0003032 "  # mean longitude
    "357.52911 0.0143997183 0.98560028 0.0001537 "  # mean anomaly
    "1.914602 0.004817 0.000014 0.019993 0.000101 0.000289 "  # equation of centre
    "125.04 0.0529537577 0.00569 0.00478 "  # nutation in longitude
    "21.448 46.815 0.00059 0.001813 0.00256 "  # obliquity
    "0.016708634 0.000042037 0.0000001267"  # eccentricity of the orbit
)


def civil_from_days(days):
    """(year, month, day) of a day number; inverse of ``astro.days_from_civil``."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    return (yoe + era * 400 + (month <= 2), month, day)


def weekday(days):
    """Day of the week of a day number: 0 Monday .. 6 Sunday."""
    return (days + 3) % 7  # 1970-01-01 was a Thursday


def sun_position(n, f):
    """(declination in radians, equation of time in minutes) at ``f`` days after 00:00 UTC of J2000 day ``n``.

    ``n`` is an int, ``f`` a float of a few days at most: their sum is never
    formed as one float (see the module docstring).
    """
    (l_0, l_n, l_g, l_t, m_0, m_n, m_g, m_t, c_1, c_1t, c_1tt, c_2, c_2t, c_3, om_0, om_n, lam_0, lam_om,
     s_0, s_1, s_2, s_3, eps_om, e_0, e_1, e_2) = map(float, _TERMS.split())  # no comprehension: its code is heap
    g = f - 0.5  # J2000.0 is 2000-01-01 12:00
    fn = float(n)
    t = (fn + g) / 36525  # Julian centuries: only slow terms use it
    whole = float(n % 360)
    # 36000.76983 and 35999.05029 degrees a century, written as one turn a day minus a small rate.
    l0 = (l_0 + whole - l_n * fn + l_g * g + l_t * t * t) % 360
    m = (m_0 + whole - m_n * fn + m_g * g - m_t * t * t) % 360
    mr = m * _RAD
    sm = sin(mr)
    c = sm * (c_1 - t * (c_1t + c_1tt * t)) + sin(2 * mr) * (c_2 - c_2t * t) + sin(3 * mr) * c_3
    om = ((om_0 - om_n * (fn + g)) % 360) * _RAD
    lam = (l0 + c - lam_0 - lam_om * sin(om)) * _RAD
    sec = s_0 - t * (s_1 + t * (s_2 - t * s_3))
    eps = (23 + (26 + sec / 60) / 60 + eps_om * cos(om)) * _RAD
    dec = asin(sin(eps) * sin(lam))
    e = e_0 - t * (e_1 + e_2 * t)
    y = tan(eps / 2)
    y *= y
    l2 = 2 * l0 * _RAD
    eot = (
        y * sin(l2)
        - 2 * e * sm
        + 4 * e * y * sm * cos(l2)
        - 0.5 * y * y * sin(2 * l2)
        - 1.25 * e * e * sin(2 * mr)
    )
    return dec, 4 * _DEG * eot


def sun_times_days(days, lat, lon, depression=SUNRISE_DEPRESSION):
    """Sunrise and sunset on a day number at a place: ``(rise, set, state)``, as ``astro.sun_times`` says."""
    lat = float(lat)
    lon = float(lon)
    lat = _MAX_LAT if lat > _MAX_LAT else -_MAX_LAT if lat < -_MAX_LAT else lat
    lat *= _RAD
    h0 = -float(depression) * _RAD
    n = days - J2000_DAY
    noon = 720 - 4 * lon
    dec, eot = sun_position(n, noon / 1440)
    # Cosine of the hour angle at which the sun's centre is at altitude h0.
    c = (sin(h0) - sin(lat) * sin(dec)) / (cos(lat) * cos(dec))
    if c >= 1:
        return None, None, ALWAYS_DOWN
    if c <= -1:
        return None, None, ALWAYS_UP
    # The sun at noon gives estimates within minutes; two corrections at each event's own time settle them.
    noon -= eot
    ha = 4 * _DEG * acos(c)
    out = []
    for sign in (-1, 1):  # sunrise, sunset
        t = noon + sign * ha
        for _ in range(2):
            dec, eot = sun_position(n, t / 1440)
            c = (sin(h0) - sin(lat) * sin(dec)) / (cos(lat) * cos(dec))
            # Near the polar limits one end of the day may just graze: hold it at noon or midnight.
            c = 1 if c > 1 else -1 if c < -1 else c
            t = 720 - 4 * lon - eot + sign * 4 * _DEG * acos(c)
        out.append(t)
    return out[0], out[1], NORMAL
