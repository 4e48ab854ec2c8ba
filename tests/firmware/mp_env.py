"""The environment of a node for common-subset tests, on either interpreter.

On MicroPython it puts the unix port's frozen modules (``asyncio``) on the
path, which ``MICROPYPATH`` replaced, so that ``boards.sim`` imports. On
CPython it adds
``ticks_ms``, ``ticks_us``, ``ticks_add``, ``ticks_diff`` (30-bit wrapping
arithmetic, as the ports do), ``sleep_ms`` and ``sleep_us`` to the ``time`` module, and
:func:`set_ms` lets a test drive ``ticks_ms`` by hand (None: the real clock).
"""

import sys
import time

if ".frozen" not in sys.path:
    sys.path.append(".frozen")

_PERIOD = 1 << 30
_HALF = 1 << 29
_fixed = [None]

if not hasattr(time, "ticks_ms"):

    def ticks_ms():
        if _fixed[0] is not None:
            return _fixed[0] % _PERIOD
        return int(time.monotonic() * 1000) % _PERIOD

    def ticks_us():
        return int(time.monotonic() * 1000000) % _PERIOD

    def ticks_add(t, delta):
        return (t + delta) % _PERIOD

    def ticks_diff(a, b):
        return ((a - b + _HALF) % _PERIOD) - _HALF

    def sleep_ms(ms):
        time.sleep(ms / 1000.0)

    def sleep_us(us):
        time.sleep(us / 1000000.0)

    time.ticks_ms = ticks_ms
    time.ticks_us = ticks_us
    time.ticks_add = ticks_add
    time.ticks_diff = ticks_diff
    time.sleep_ms = sleep_ms
    time.sleep_us = sleep_us
    HOST = True
else:
    HOST = False


def set_ms(ms):
    """Freeze ``ticks_ms`` at ``ms`` (CPython only; None: follow the real clock). True if it took effect."""
    if not HOST:
        return False
    _fixed[0] = ms
    return True
