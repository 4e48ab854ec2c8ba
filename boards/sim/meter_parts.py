"""The virtual water meter's parts: reeds A (and B) on the magnet wheel, a Hall tamper sensor, the battery.

Built by the sensor host (:mod:`boards.sim.sensor_host`, a process of its own
that the virtual board starts the first time the firmware asks for one of
them).
Settings come from ``sim.json`` (at boot) and ``control.json`` (any time, read
twice a second; it outlives a reboot as the world does), the same keys in both:
``"water"``: :meth:`boards.sim.water.WaterPhysics.configure` settings (``mode``,
``lpm``, ``pulse_l``, ``magnet``, ``battery_v``, ``bounce``, ``t0``, ``phase0``);
``"channels"``: 2 (reeds A and B: the direction is seen) or 1 (``sim.json`` only).

When counting starts the part writes ``meter-session.json``:
``{"counting_since": <wall time>, "phase": <wheel>}``, before the first edge
reaches the firmware, so that a test knows which turns this boot could count.
"""

import asyncio
import time

from .flash import Control, write_json
from .water import WaterPhysics

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_METER_STEP_MS = const(20)
_CONTROL_EVERY = const(25)  # steps between two reads of control.json


class MeterParts:
    """Reeds A (and B) on the meter's magnet wheel, a Hall tamper sensor and the battery."""

    name = "water"

    def __init__(self, cfg, prev):
        now = time.time()
        water = cfg.get("water") or {}
        self.physics = WaterPhysics(cfg.get("seed", 0), water.get("pulse_l", 1.0), now)
        if isinstance(prev, dict):
            self.physics.restore(prev, now)
        self.physics.configure(water, now)
        self.channels = cfg.get("channels", 2)
        self.has_direction = self.channels >= 2  # reed B, a quarter turn after A: backflow is seen
        self.counter = None
        self.counting_since = None
        self._control = Control()
        ctl = self._control.poll()  # the world as a test left it outlives a reboot
        if ctl is not None and isinstance(ctl.get("water"), dict):
            self.physics.configure(ctl["water"], now)

    def pulse_input(self, counter):
        """Feed the reeds' edges to ``counter`` (``firmware.pulses.PulseCounter``) from now on."""
        self.physics.advance(time.time())
        a, _ = self.physics.levels()
        self.counting_since = time.time()
        write_json("meter-session.json", {"counting_since": self.counting_since, "phase": self.physics.phase})
        self.counter = counter
        counter.start(time.ticks_ms(), a)

    def step(self):
        """Move the wheel to now, delivering its edges with their times."""
        counter = self.counter
        now_ms = time.ticks_ms()
        one = self.channels < 2

        def emit(back, a, b):
            if counter is not None:
                counter.edge(time.ticks_add(now_ms, -back), a, 1 if one else b)

        self.physics.advance(time.time(), emit)

    def apply_control(self):
        """Apply a change of the water in control.json (the wheel first moves to now under the old one)."""
        ctl = self._control.poll()
        if ctl is not None and isinstance(ctl.get("water"), dict):
            self.step()
            self.physics.configure(ctl["water"], time.time())

    async def run(self):
        """The meter's physics, every 20 ms."""
        n = 0
        while True:
            n += 1
            if n >= _CONTROL_EVERY:
                n = 0
                self.apply_control()
            self.step()
            await asyncio.sleep_ms(_METER_STEP_MS)

    def tamper(self):
        """The Hall sensor sees a magnet."""
        return bool(self.physics.magnet)

    def battery_mv(self):
        """Battery voltage in mV."""
        return int(self.physics.battery_v * 1000 + 0.5)

    def snapshot(self):
        """The meter's state for world.json."""
        state = self.physics.snapshot()
        state["counting_since"] = self.counting_since
        state["channels"] = self.channels
        return state
