# common-subset
"""The node's clock: set by a write, kept by ticks (across their wrap), unsynced when never set or too old."""

import time

import mp_env  # noqa: F401 - ticks on CPython

from firmware.events import Clock

PERIOD = time.ticks_add(0, -1) + 1  # the port's tick period (2**30 on the ESP32)


class Ticks:
    """A hand-driven millisecond counter that wraps like the port's."""

    def __init__(self, start=0):
        self.t = start

    def __call__(self):
        return self.t % PERIOD

    def add(self, ms):
        self.t += ms


def test_unset_until_written_then_counts_the_ticks():
    t = Ticks()
    c = Clock(t)
    assert c.epoch() is None and not c.synced() and c.age_s() is None
    t.add(2500)
    assert c.uptime_s() == 2
    assert c.set(1700000000) is None  # the first set since boot
    t.add(1999)
    assert c.epoch() == 1700000001 and c.synced() and c.age_s() == 1
    t.add(1)
    assert c.epoch() == 1700000002
    assert c.set(1700000012) == 10  # the correction, in seconds
    assert c.uptime_s() == 4 and c.ms() == 4500


def test_a_clock_older_than_max_age_is_unsynced():
    t = Ticks()
    c = Clock(t)
    c.max_age_s = 60
    c.set(1700000000)
    t.add(60000)
    assert c.synced()
    t.add(1000)
    assert not c.synced() and c.epoch() == 1700000061  # still counting, only not trusted


def test_days_of_ticks_across_the_wrap_keep_exact_time():
    t = Ticks(PERIOD - 5000)  # five seconds before the wrap
    c = Clock(t)
    c.set(1700000000)
    for _ in range(10 * 24):  # ten days, updated every hour (the node updates every sample)
        t.add(3600000)
        c.update()
    assert c.epoch() == 1700000000 + 10 * 86400
    assert c.age_s() == 10 * 86400


def test_ticks_that_run_backwards_are_ignored():
    t = Ticks(10000)
    c = Clock(t)
    c.set(1700000000)
    t.t -= 500
    assert c.epoch() == 1700000000
