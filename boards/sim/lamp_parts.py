"""The virtual lamp post's parts: supply relay, LED driver (dimmer), metering chip, driver thermometer.

:class:`LampParts` is built by the virtual board (:mod:`boards.sim`) the first
time the firmware drives or measures the lamp, over :class:`LampPhysics`, and
carried by lamp images only (``board.json`` ``role_modules``): a meter or
an environment node holds none of it. Faults and supply follow ``sim.json``
``"fault"`` at boot and ``control.json`` (``"mains"``, ``"fault"``,
``"wear"``) as the board reads it. A new lamp continues the previous
``world.json``'s energy and temperature: the lamp outlives its controller.

The physics (:class:`LampPhysics`) of a 60 W LED street luminaire: pure
arithmetic on explicit time steps (no clock, no I/O), so it runs and is tested
on CPython as well as on MicroPython.

- Light output follows the driver's dim level with a fade: at most full scale
  per ``RAMP_S`` seconds up or down. Opening the relay cuts the light at once.
- Input power with the relay closed: ``STANDBY_W`` for the driver's own
  electronics plus ``RATED_W * light / efficiency``; the driver's efficiency
  rises with load from 0.85 to 0.92, so full light draws about 65.7 W.
- Mains voltage 230 V with a little noise; power factor 0.95 at full load,
  lower when dimmed (0.5 at standby); current = P / (V * pf). The meter sits
  upstream of the relay: it reads the voltage with the relay open, and 0 W.
- Driver temperature relaxes toward ``ambient + 25 K * P / P_full`` with time
  constant ``TAU_S``.
- ``failed`` models a dead LED driver: it draws nothing and gives no light;
  ``stuck`` a driver that ignores the dim level (always full light);
  ``welded`` a relay whose contact welded shut (it stays closed whatever the
  controller says); ``mains`` False a supply cut upstream (0 V, nothing drawn).
- Injected faults (:mod:`boards.sim.faults` draws and records them): ``wear``,
  a degrading driver that draws ``1 + wear`` times the power for the same
  light with its power factor ``wear / 2`` lower, growing by ``wear_per_day``
  per day of model time; ``cycle_s`` (on, off), a driver whose thermal cut-out
  drops the light for ``off`` seconds after every ``on`` seconds lit.

Noise comes from a tiny seeded LCG, the same sequence on both interpreters.
Whole numbers in the arithmetic are integers (``/ 3600``): the same float
results, and no float object of their own in the node's heap.

Parts and physics are one module, the noise a method, the fault checks one: a
running lamp interns every name of the modules it imports (about 640 make the
node's name pools take a step of 7 KB), and a module of its own or a class
costs a few.
"""

import json
import time
from math import exp

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


RATED_W = const(60.0)
STANDBY_W = const(0.5)
RAMP_S = 0.5
TAU_S = 120.0
MAINS_V = 230.0
RISE_K = 25.0
_FULL_W = const(STANDBY_W + RATED_W / 0.92)


class LampPhysics:
    """State of one luminaire; call :meth:`step` with the seconds elapsed, then read it."""

    def __init__(self, seed=0, ambient_c=20.0, temperature_c=None, energy_wh=0.0):
        self.relay = False
        self.level = 0.0  # the driver's target, 0..1
        self.light = 0.0  # actual light output, 0..1
        self.failed = False
        self.stuck = False
        self.welded = False
        self.mains = True
        self.ambient_c = ambient_c
        self.temperature_c = ambient_c if temperature_c is None else temperature_c
        self.energy_wh = energy_wh  # true energy drawn; the node computes its own reading
        self._x = (seed * 2654435761 + 12345) & 0x7FFFFFFF  # the noise's LCG state
        self.wear = 0.0
        self.wear_per_day = 0.0
        self.cycle_s = None  # (on, off) seconds of a cycling driver
        self._cycle_t = 0.0

    def set_relay(self, on):
        """Close (True) or open (False) the supply relay (a welded one stays closed)."""
        self.relay = bool(on) or self.welded
        if not self.relay:
            self.light = 0.0

    def _fed(self):
        cycle = self.cycle_s  # a cycling driver's thermal cut-out
        cut_out = cycle is not None and self._cycle_t % (cycle[0] + cycle[1]) >= cycle[0]
        return self.relay and self.mains and not self.failed and not cut_out

    def _uniform(self, lo, hi):
        """A number in [lo, hi) from the noise's 31-bit LCG (no dependency on ``random``)."""
        self._x = (1103515245 * self._x + 12345) & 0x7FFFFFFF
        return lo + (hi - lo) * (self._x / 2147483648.0)

    def set_level(self, percent):
        """Set the driver's dim level, 0..100 %."""
        self.level = min(100, max(0, percent)) / 100

    def step(self, dt):
        """Advance the model by ``dt`` seconds."""
        if dt <= 0:
            return
        if self.wear_per_day:
            self.wear += self.wear_per_day * dt / 86400
        if self.cycle_s is not None and self.relay and self.mains:
            self._cycle_t += dt
        target = (1.0 if self.stuck else self.level) if self._fed() else 0.0
        if not self.relay or not self.mains:
            self.light = 0.0
        elif self.light < target:
            self.light = min(target, self.light + dt / RAMP_S)
        elif self.light > target:
            self.light = max(target, self.light - dt / RAMP_S)
        p = self.power_w()
        self.energy_wh += p * dt / 3600
        goal = self.ambient_c + RISE_K * p / _FULL_W
        self.temperature_c += (goal - self.temperature_c) * (1 - exp(-dt / TAU_S))

    def power_w(self):
        """True active power drawn now, in watts."""
        if not self._fed():
            return 0.0
        return (STANDBY_W + RATED_W * self.light / (0.85 + 0.07 * self.light)) * (1 + self.wear)

    def power_factor(self):
        """Power factor at the present load."""
        return (0.5 + 0.45 * self.light) * (1 - self.wear / 2)

    def measure(self):
        """What a metering chip reads now: ``(voltage_V, current_A, power_W)`` with noise."""
        if not self.mains:
            return 0.0, 0.0, 0.0
        v = MAINS_V + self._uniform(-1.5, 1.5)
        p = self.power_w()
        if p > 0.0:
            p *= 1 + self._uniform(-0.003, 0.003)
        i = p / (v * self.power_factor()) if p > 0.0 else 0.0
        return v, i, p

    def thermometer(self):
        """Driver temperature as its sensor reads it, in degrees Celsius."""
        return self.temperature_c + self._uniform(-0.1, 0.1)


class LampParts:
    """The board members ``relay``, ``dimmer``, ``read_meter`` and ``read_temperature``, and the lamp's state."""

    name = ""  # its state goes at the top of world.json

    def __init__(self, board, cfg):
        try:
            with open("world.json") as f:
                prev = json.load(f)
        except (OSError, ValueError):
            prev = {}
        self.physics = LampPhysics(seed=cfg.get("seed", 0), ambient_c=cfg.get("ambient_c", 20.0),
                                   temperature_c=prev.get("temperature_c"), energy_wh=prev.get("energy_wh", 0.0))
        self._last_ms = time.ticks_ms()
        self.meter_fault = False
        self.control(board.ctl, cfg.get("fault"))

    def control(self, ctl, fault=None):
        """Follow ``control.json`` (parsed by the board): supply, faults (``fault``: the one before, if not named)."""
        lamp = self.physics
        lamp.mains = ctl.get("mains", True) is not False
        lamp.wear = ctl.get("wear", 0.0) or 0.0
        if "fault" in ctl:
            fault = ctl["fault"]
        elif fault is None:
            return
        self.meter_fault = fault == "meter"
        lamp.failed = fault == "driver"
        lamp.stuck = fault == "dimmer"
        lamp.welded = fault == "relay"
        if lamp.welded:
            lamp.set_relay(True)

    def _advance(self):
        now = time.ticks_ms()
        self.physics.step(time.ticks_diff(now, self._last_ms) / 1000)
        self._last_ms = now

    def relay(self, on):
        """Close (True) or open (False) the lamp's supply relay."""
        self._advance()
        self.physics.set_relay(on)

    def dimmer(self, percent):
        """Set the driver's dim level, 0..100 %."""
        self._advance()
        self.physics.set_level(percent)

    def read_meter(self):
        """``(voltage_V, current_A, power_W)`` from the metering chip."""
        if self.meter_fault:
            raise OSError("metering chip does not answer")
        self._advance()
        return self.physics.measure()

    def read_temperature(self):
        """Driver temperature in degrees Celsius."""
        self._advance()
        return self.physics.thermometer()

    async def run(self):
        """Nothing to run: the physics advance at every call and every world snapshot."""

    def snapshot(self):
        """The lamp's keys of ``world.json``."""
        self._advance()
        lamp = self.physics
        return {"light": lamp.light, "power_w": lamp.power_w(), "relay": lamp.relay, "level": lamp.level,
                "temperature_c": lamp.temperature_c, "energy_wh": lamp.energy_wh}
