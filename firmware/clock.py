"""The node's wall clock: set by the gateway, kept between writes by counting ticks.

``Clock(ticks_ms)`` counts with the board's millisecond ticks (``time.ticks_ms``
on hardware; the virtual board's ticks run at the virtual street's speed).
:meth:`Clock.update` must run at least every few days (ticks wrap: on the
ESP32 ``ticks_diff`` is exact up to 2**29 ms, about six days); the node calls
it every sample.

- ``epoch()``: Unix seconds UTC, or None while the clock has not been set
  since boot (it does not survive a reset: nothing on the node keeps time
  without power).
- ``synced()``: set since boot, and the last set is at most ``max_age_s``
  old (a crystal drifts about 2 s a day).
- ``uptime_s()``: seconds since boot in the same timebase, for events that
  happen before the clock is set.
- ``ms()``: a monotonic millisecond count since boot (never wraps), for
  timers that must follow the clock's timebase (an override).

Integers only; the second count is split from the milliseconds so that no
value outgrows a small integer on the ESP32 except the epoch itself.
"""

import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_DEFAULT_MAX_AGE_S = const(604800)  # a week


class Clock:
    """Wall clock and uptime of the node, in the timebase of ``ticks_ms``."""

    def __init__(self, ticks_ms=None):
        self._ticks = ticks_ms or time.ticks_ms
        self._last = self._ticks()
        self._epoch = 0  # whole seconds; 0: not set since boot
        self._frac = 0  # milliseconds beyond _epoch
        self._up_s = 0
        self._up_frac = 0
        self._age_s = -1  # seconds since the last set; -1 never
        self._age_frac = 0
        self.max_age_s = _DEFAULT_MAX_AGE_S
        self.sets = 0

    def update(self):
        """Advance by the ticks elapsed since the last call."""
        now = self._ticks()
        d = time.ticks_diff(now, self._last)
        self._last = now
        if d <= 0:
            return
        f = self._up_frac + d
        self._up_s += f // 1000
        self._up_frac = f % 1000
        if self._epoch:
            f = self._frac + d
            self._epoch += f // 1000
            self._frac = f % 1000
            f = self._age_frac + d
            self._age_s += f // 1000
            self._age_frac = f % 1000

    def set(self, epoch):
        """Set the time (epoch seconds); return the correction in seconds, or None for the first set since boot."""
        self.update()
        old = self._epoch
        self._epoch = epoch
        self._frac = 0
        self._age_s = 0
        self._age_frac = 0
        self.sets += 1
        return epoch - old if old else None

    def epoch(self):
        """Unix seconds UTC, or None if not set since boot."""
        self.update()
        return self._epoch or None

    def synced(self):
        """True if set since boot and the last set is at most ``max_age_s`` old."""
        self.update()
        return self._epoch != 0 and self._age_s <= self.max_age_s

    def age_s(self):
        """Seconds since the last set, or None if not set since boot."""
        self.update()
        return self._age_s if self._age_s >= 0 else None

    def uptime_s(self):
        """Seconds since boot, in the clock's timebase."""
        self.update()
        return self._up_s

    def ms(self):
        """Milliseconds since boot, in the clock's timebase; never wraps."""
        self.update()
        return self._up_s * 1000 + self._up_frac
