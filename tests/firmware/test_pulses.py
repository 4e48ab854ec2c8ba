# common-subset
"""Reed-switch pulses: debounce, spikes, direction, and the counter driven by the virtual meter."""

import time

import mp_env  # noqa: F401  (time.ticks_* on CPython, frozen asyncio on MicroPython)

from boards.sim.water import WaterPhysics
from firmware.pulses import PulseCounter


def _turn(c, t, closed_ms=200, open_ms=200, b_at_open=0, chatter=0):
    """One turn of the wheel from t (A open before): close, stay, open. Returns the time after."""
    c.edge(t, 0, 1)
    for i in range(chatter):
        c.edge(t + 1 + 2 * i, 1, 1)
        c.edge(t + 2 + 2 * i, 0, 1)
    t += closed_ms
    c.edge(t, 1, b_at_open)
    for i in range(chatter):
        c.edge(t + 1 + 2 * i, 0, b_at_open)
        c.edge(t + 2 + 2 * i, 1, b_at_open)
    return t + open_ms


def test_clean_turns_count_forward():
    c = PulseCounter(20)
    c.start(0, 1)
    t = 100
    for _ in range(5):
        t = _turn(c, t)
    assert (c.forward, c.reverse, c.rejected) == (5, 0, 0)


def test_contact_bounce_is_rejected():
    c = PulseCounter(20)
    c.start(0, 1)
    t = 100
    for _ in range(7):
        t = _turn(c, t, chatter=3)
    assert c.forward == 7
    assert c.rejected > 0


def test_the_turn_counts_when_the_magnet_leaves():
    c = PulseCounter(20)
    c.start(0, 1)
    c.edge(100, 0, 1)
    assert c.forward == 0  # closed: not yet
    c.edge(400, 1, 0)
    assert c.forward == 1 and c.last_ms == 400


def test_short_spikes_of_either_polarity_add_nothing():
    c = PulseCounter(20)
    c.start(0, 1)
    c.edge(100, 0, 1)  # a 2 ms low spike while open
    c.edge(102, 1, 1)
    assert c.forward == 0
    t = _turn(c, 300)
    assert c.forward == 1
    c.edge(t, 0, 1)  # magnet on the reed, then a 1 ms high spike, then the real opening
    c.edge(t + 100, 1, 1)
    c.edge(t + 101, 0, 1)
    c.edge(t + 300, 1, 0)
    assert c.forward == 2  # the spike counted this turn early; the opening does not count it again


def test_a_contact_shorter_than_the_debounce_never_counts():
    c = PulseCounter(50)
    c.start(0, 1)
    t = 100
    for _ in range(4):
        t = _turn(c, t, closed_ms=30, open_ms=30)
    assert c.forward == 0


def test_quadrature_gives_the_direction():
    c = PulseCounter(20, quadrature=True)
    c.start(0, 1)
    t = _turn(c, 100, b_at_open=0)
    t = _turn(c, t, b_at_open=1)
    t = _turn(c, t, b_at_open=1)
    assert (c.forward, c.reverse) == (1, 2)


def test_one_channel_counts_every_turn_forward():
    c = PulseCounter(20, quadrature=False)
    c.start(0, 1)
    t = _turn(c, 100, b_at_open=1)
    _turn(c, t, b_at_open=1)
    assert (c.forward, c.reverse) == (2, 0)


def test_a_turn_in_progress_at_start_counts_once():
    c = PulseCounter(20)
    c.start(0, 0)  # booted with the magnet on the reed
    c.edge(300, 1, 0)
    assert c.forward == 1


def test_ticks_wrap_around():
    c = PulseCounter(20)
    top = time.ticks_add(0, -50)  # 50 ms before the tick counter wraps
    c.start(top, 1)
    c.edge(time.ticks_add(top, 30), 0, 1)  # before the wrap
    c.edge(time.ticks_add(top, 230), 1, 0)  # after it: closed for 200 ms
    assert c.forward == 1 and c.rejected == 0


class _Meter:
    """The virtual meter wired to a counter, on a tick clock that starts at 1000 ms."""

    def __init__(self, counter, water):
        self.counter = counter
        self.water = water
        self.now_ms = 1000
        counter.start(self.now_ms, water.levels()[0])

    def run(self, seconds, step=0.05):
        """Advance in ``step``-second steps, feeding each edge to the counter at its tick."""

        def emit(back, a, b):
            self.counter.edge(self.now_ms - back, a, b)

        t = self.water.t
        for _ in range(int(seconds / step + 0.5)):
            t += step
            self.now_ms += int(step * 1000)
            self.water.advance(t, emit)


def test_counter_matches_the_virtual_meter_with_bounce():
    water = WaterPhysics(seed=3, pulse_l=1.0, now=0.0)
    water.configure({"mode": "constant", "lpm": 150.0}, 0.0)  # 2.5 turns/s
    c = PulseCounter(20, quadrature=True)
    _Meter(c, water).run(20.0)
    assert water.turns_forward == 50
    assert (c.forward, c.reverse) == (50, 0)
    assert c.rejected >= 100  # the chatter was there, and ignored
    assert abs(water.forward_l - 50.0) < 1e-6


def test_counter_follows_backflow_and_back():
    water = WaterPhysics(seed=1, pulse_l=0.5, now=0.0)
    water.configure({"mode": "backflow", "lpm": 30.0}, 0.0)  # 1 turn/s backwards
    c = PulseCounter(20, quadrature=True)
    meter = _Meter(c, water)
    meter.run(10.1)  # 202 steps: the wheel stops mid-turn (a reversal exactly where A
    # opens would leave it open for 0 ms, which no debounced counter can see)
    assert c.reverse == water.turns_reverse
    assert c.reverse == 11 and c.forward == 0  # 1 turn/s, plus the opening at phase 0
    water.configure({"mode": "constant", "lpm": 60.0}, water.t)
    meter.run(10.0)
    assert c.forward == water.turns_forward == 20
