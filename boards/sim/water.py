"""The physics of a household water connection and its reed-switch meter, for the virtual board.

Pure arithmetic on wall-clock seconds (no clock, no I/O), so it runs and is
tested on CPython as well as on MicroPython. The water keeps flowing while the
node is down: a restarted node's meter continues from the last world state
(or, with ``t0``, from a closed form of a constant flow).

Flow models (``mode``; ``lpm`` in litres per minute, negative = backwards):

- ``off``; ``constant`` (``lpm``, either sign);
- ``household``: draws of 4..12 l/min lasting 10..90 s, started in 2-minute
  slots with a probability that follows the day (night 2 %, morning peak
  50 %, evening 40 %, daytime 15 %), the same for the same seed and time;
- ``leak``: household plus a flow that never stops (``lpm``, default 0.5);
- ``burst``: household plus a burst pipe (``lpm``, default 90);
- ``backflow``: water pushed back through the meter (``lpm``, default 3).

Injected faults (:mod:`boards.sim.faults` draws and records them), on top of
any mode: ``leak_lph`` litres per hour that never stop, from wall time
``leak_from``; from ``stuck_from`` the wheel no longer turns (a stuck meter:
the water still flows, the meter counts nothing).

The meter: the magnet wheel turns once per ``pulse_l`` litres of net flow.
Reed A is closed (level 0) for the first half of a turn, reed B a quarter turn
later (levels are pulled up: 1 open). :meth:`WaterPhysics.advance` moves the
wheel and reports every change of A as ``(ms_before_now, a, b)``, with
contact bounce (two extra edges within 2 ms when A closes, one when it opens)
unless ``bounce`` is off. ``turns_forward`` / ``turns_reverse`` count the
openings of A per direction: what an ideal counter would count.
"""

import math

from .rng import hashed

_SLOT_S = 120.0
_SUBSTEP_S = 0.1
_CATCH_UP_S = 3600.0  # downtime integrated at restart, at most


def _hour_chance(hour):
    if hour < 5:
        return 0.02
    if 6 <= hour < 9:
        return 0.5
    if 18 <= hour < 22:
        return 0.4
    return 0.15


class WaterPhysics:
    """One connection and meter; ``configure`` it, then ``advance`` it with the wall clock."""

    def __init__(self, seed=0, pulse_l=1.0, now=0.0):
        self.seed = seed
        self.pulse_l = pulse_l
        self.mode = "household"
        self.lpm = None
        self.bounce = True
        self.magnet = False  # a strong magnet held against the meter (tamper)
        self.battery_v = 3.6
        self.t = now  # wall-clock seconds of the state
        self.phase = 0.0  # turns of the wheel, net
        self.forward_l = 0.0  # true volumes
        self.reverse_l = 0.0
        self.turns_forward = 0
        self.turns_reverse = 0
        self.leak_lph = 0.0
        self.leak_from = None
        self.stuck_from = None

    # -- set-up --------------------------------------------------------------

    def restore(self, state, now):
        """Continue from a world snapshot ``state`` (a dict), integrating the downtime up to ``now``."""
        self.phase = state.get("phase", 0.0)
        self.forward_l = state.get("forward_l", 0.0)
        self.reverse_l = state.get("reverse_l", 0.0)
        self.turns_forward = state.get("turns_forward", 0)
        self.turns_reverse = state.get("turns_reverse", 0)
        self.t = state.get("t", now)
        if now - self.t > _CATCH_UP_S:
            self.t = now - _CATCH_UP_S
        while self.t < now:
            dt = min(1.0, now - self.t)
            self._move(self.t, dt, None, 0.0)
            self.t += dt

    def configure(self, settings, now):
        """Apply ``settings`` (a dict: mode, lpm, pulse_l, bounce, magnet, battery_v, t0, phase0).

        With ``t0`` (and a constant flow) the wheel is put where the flow since
        ``t0`` brought it, from ``phase0``: a closed form that a test can redo.
        """
        self.mode = settings.get("mode", self.mode)
        self.lpm = settings.get("lpm", self.lpm)
        self.pulse_l = settings.get("pulse_l", self.pulse_l)
        self.bounce = settings.get("bounce", self.bounce)
        self.magnet = settings.get("magnet", self.magnet)
        self.battery_v = settings.get("battery_v", self.battery_v)
        self.leak_lph = settings.get("leak_lph", self.leak_lph)
        self.leak_from = settings.get("leak_from", self.leak_from)
        self.stuck_from = settings.get("stuck_from", self.stuck_from)
        t0 = settings.get("t0")
        if t0 is not None and self.mode == "constant":
            q = (self.lpm or 0.0) / 60.0
            turns = q * (now - t0) / self.pulse_l
            self.phase = settings.get("phase0", 0.0) + turns
            self.forward_l = q * (now - t0) if q > 0 else 0.0
            self.reverse_l = -q * (now - t0) if q < 0 else 0.0
            self.turns_forward = self.turns_reverse = 0
            self.t = now

    # -- the flow ------------------------------------------------------------

    def flow_lps(self, t):
        """Net flow at wall time ``t`` in litres per second (negative: backwards)."""
        q = self._mode_flow(t)
        if self.leak_lph and self.leak_from is not None and t >= self.leak_from:
            q += self.leak_lph / 3600.0
        return q

    def _mode_flow(self, t):
        mode = self.mode
        lpm = self.lpm
        if mode == "off":
            return 0.0
        if mode == "constant":
            return (lpm or 0.0) / 60.0
        if mode == "backflow":
            return -abs(3.0 if lpm is None else lpm) / 60.0
        q = self._household(t)
        if mode == "leak":
            q += (0.5 if lpm is None else lpm) / 60.0
        elif mode == "burst":
            q += (90.0 if lpm is None else lpm) / 60.0
        return q

    def volume_between(self, t0, t1):
        """True litres through the connection from ``t0`` to ``t1`` (closed form: fast enough for a month)."""
        total = 0.0
        mode = self.mode
        if mode == "constant":
            total += (self.lpm or 0.0) / 60.0 * (t1 - t0)
        elif mode in ("household", "leak", "burst"):
            for s in range(int(t0 // _SLOT_S) - 1, int(t1 // _SLOT_S) + 1):
                start = s * _SLOT_S
                r = hashed(self.seed, s)
                if not r.chance(_hour_chance(int((start % 86400.0) // 3600.0))):
                    continue
                begin = start + r.uniform(0.0, _SLOT_S)
                end = begin + r.uniform(10.0, 90.0)
                overlap = min(end, t1) - max(begin, t0)
                if overlap > 0:
                    total += r.uniform(4.0, 12.0) / 60.0 * overlap
            extra = {"leak": 0.5, "burst": 90.0}.get(mode)
            if extra is not None:
                total += (extra if self.lpm is None else self.lpm) / 60.0 * (t1 - t0)
        if self.leak_lph and self.leak_from is not None and t1 > self.leak_from:
            total += self.leak_lph / 3600.0 * (t1 - max(t0, self.leak_from))
        return total

    def counted_between(self, t0, t1):
        """Litres the meter counts from ``t0`` to ``t1``: the true volume, none of it once it is stuck."""
        stuck = self.stuck_from
        if stuck is not None:
            if t0 >= stuck:
                return 0.0
            t1 = min(t1, stuck)
        return self.volume_between(t0, t1)

    def _household(self, t):
        slot = int(t // _SLOT_S)
        q = 0.0
        for s in (slot - 1, slot):
            start = s * _SLOT_S
            hour = int((start % 86400.0) // 3600.0)
            r = hashed(self.seed, s)
            if not r.chance(_hour_chance(hour)):
                continue
            begin = start + r.uniform(0.0, _SLOT_S)
            length = r.uniform(10.0, 90.0)
            if begin <= t < begin + length:
                q += r.uniform(4.0, 12.0) / 60.0
        return q

    # -- the meter -----------------------------------------------------------

    def levels(self):
        """``(a, b)``: the reed switches' levels now (0 closed)."""
        quarter = int(math.floor(self.phase * 4.0)) % 4
        return (0 if quarter < 2 else 1), (0 if quarter in (1, 2) else 1)

    def advance(self, now, emit=None):
        """Move the wheel up to wall time ``now``; ``emit(ms_before_now, a, b)`` for each change of reed A."""
        t = self.t
        while t < now:
            dt = min(_SUBSTEP_S, now - t)
            self._move(t, dt, emit, now)
            t += dt
        self.t = now

    def _move(self, t, dt, emit, now):
        q = self.flow_lps(t)
        if q == 0.0:
            return
        if q > 0:
            self.forward_l += q * dt
        else:
            self.reverse_l -= q * dt
        if self.stuck_from is not None and t >= self.stuck_from:
            return  # the water flows; the wheel does not turn
        p0 = self.phase
        p1 = p0 + q * dt / self.pulse_l
        self.phase = p1
        forward = p1 > p0
        # Quarter boundaries crossed, in the order the wheel meets them.
        if forward:
            k = int(math.floor(p0 * 4.0)) + 1
            last = int(math.floor(p1 * 4.0))
            step = 1
        else:
            k = int(math.floor(p0 * 4.0))
            last = int(math.floor(p1 * 4.0)) + 1
            step = -1
        while (k <= last) if forward else (k >= last):
            quarter = (k if forward else k - 1) % 4
            if k % 2 == 0:  # reed A changes at whole and half turns
                a = 0 if quarter < 2 else 1
                b = 0 if quarter in (1, 2) else 1
                if a:
                    if forward:
                        self.turns_forward += 1
                    else:
                        self.turns_reverse += 1
                if emit is not None:
                    tc = t + (k / 4.0 - p0) / (p1 - p0) * dt
                    back = int((now - tc) * 1000.0 + 0.5)
                    self._edges(emit, back, a, b)
            k += step

    def _edges(self, emit, back, a, b):
        back = max(back, 0)
        emit(back, a, b)
        if not self.bounce:
            return
        # The contact chatters for a couple of milliseconds, then settles at `a`.
        chatter = 2 if a == 0 else 1
        for _i in range(chatter):
            back = back - 1 if back > 0 else 0
            emit(back, 1 - a, b)
            back = back - 1 if back > 0 else 0
            emit(back, a, b)

    def snapshot(self):
        """The state for world.json."""
        a, b = self.levels()
        return {
            "mode": self.mode,
            "flow_lps": self.flow_lps(self.t),
            "phase": self.phase,
            "forward_l": self.forward_l,
            "reverse_l": self.reverse_l,
            "turns_forward": self.turns_forward,
            "turns_reverse": self.turns_reverse,
            "reed_a": a,
            "reed_b": b,
            "magnet": self.magnet,
            "battery_v": self.battery_v,
            "t": self.t,
        }
