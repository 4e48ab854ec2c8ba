"""The virtual board's end of a water meter's parts: reeds, Hall sensor and battery over the sensor link.

:class:`MeterLink` gives a water meter's ``pulse_input(counter)``,
``has_direction``, ``tamper()`` and ``battery_mv()`` from the sensor host
(:mod:`boards.sim.sensor_host`); every 20 ms it takes the reed edges of the
wheel's move to now from the host and hands them to the counter with their
times, as the reed interrupts would. Meter images only (``board.json``
``role_modules``): an environment node does not hold its names.
"""

import asyncio
import struct
import time

from .sensor_link import _Link

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_STEP_MS = const(20)  # the meter's wheel, as the in-process parts moved it


class MeterLink(_Link):
    """Reeds A (and B), the Hall tamper sensor and the battery of a water meter, served by the sensor host."""

    name = "water"

    def __init__(self, board=None, cfg=None):
        _Link.__init__(self, "meter")
        self.has_direction = self._call(100)[0] == 1  # reed B, a quarter turn after A: backflow is seen
        self._counter = None

    def pulse_input(self, counter):
        """Feed the reeds' edges to ``counter`` (``firmware.pulses.PulseCounter``) from now on."""
        a = self._call(97)[0]
        counter.start(time.ticks_ms(), a)
        self._counter = counter

    def tamper(self):
        """The Hall sensor sees a strong magnet."""
        return self._call(116)[0] == 1

    def battery_mv(self):
        """Battery voltage, mV."""
        return int(self._call(98))

    async def run(self):
        """The reed edges of the wheel's moves, every 20 ms, with their times."""
        while True:
            counter = self._counter
            if counter is not None:
                data = self._call(101)
                now = time.ticks_ms()
                for i in range(0, len(data), 6):
                    back, a, b = struct.unpack_from(">IBB", data, i)
                    counter.edge(time.ticks_add(now, -back), a, b)
            await asyncio.sleep_ms(_STEP_MS)
