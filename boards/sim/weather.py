"""The weather and the street's air and noise, for the virtual environment node.

Pure arithmetic on wall-clock seconds (UTC), no clock and no I/O, the same on
CPython and MicroPython. Every value is a function of the time and the seed,
so a restarted node sees the weather go on, and a test can override any value
with a fixed one (``configure({"temperature_c": 21.5, ...})``).

- temperature: 12 degC mean, +-6 K over the day (warmest 15:00), +-2 K over
  five days;
- humidity: falls 2.5 %RH per kelvin above the mean, 20..98 %RH;
- pressure: 101325 Pa +-800 Pa over 3.5 days, +-150 Pa over 9 hours;
- PM2.5: 8 ug/m3 background, +15 at the rush hours (7-9, 17-19), episodes
  (a 6-hour slot has one with a 20 % chance, up to +40, rising and falling);
  PM10 = 1.7 * PM2.5 + 3;
- noise: 45 dB(A) at night to 68 dB(A) in the rush hours, +-3 dB second by second.

Sensor faults (what the node's sensor reads, not the air; :mod:`boards.sim.faults`
draws and records them): ``bias_k``, a fixed offset of the thermometer (a
sunny wall); ``drift_k_per_day`` from ``drift_from``, a thermometer drifting
away; ``stuck_from``, temperature, humidity and pressure frozen at their values
then.
"""

import math

from .rng import hashed

_TWO_PI = 2.0 * math.pi
FIELDS = ("temperature_c", "humidity", "pressure_pa", "pm25", "pm10", "noise_db")


def _traffic(hour):
    if hour < 5 or hour >= 23:
        return 0.1
    if 7 <= hour < 9 or 17 <= hour < 19:
        return 1.0
    return 0.6


class WeatherPhysics:
    """The outdoor world around one node; :meth:`at` gives its values at a wall time."""

    def __init__(self, seed=0):
        self.seed = seed
        self.fixed = {}
        self.bias_k = 0.0
        self.drift_k_per_day = 0.0
        self.drift_from = None
        self.stuck_from = None

    def configure(self, settings):
        """Fix some values (keys of :data:`FIELDS`); ``None`` returns a value to the model."""
        for key in FIELDS:
            if key in settings:
                value = settings[key]
                if value is None:
                    self.fixed.pop(key, None)
                else:
                    self.fixed[key] = float(value)
        for key in ("bias_k", "drift_k_per_day", "drift_from", "stuck_from"):
            if key in settings:
                setattr(self, key, settings[key])

    def at(self, t):
        """``{field: value}`` at wall time ``t`` (seconds since the epoch), as the node's sensors read it."""
        stuck = self.stuck_from
        if stuck is not None and t >= stuck:
            values = self._at(t)
            frozen = self._at(stuck)
            for key in ("temperature_c", "humidity", "pressure_pa"):
                values[key] = frozen[key]
            return values
        return self._at(t)

    def _at(self, t):
        hour_f = (t % 86400.0) / 3600.0
        hour = int(hour_f)
        temp = 12.0 + 6.0 * math.sin(_TWO_PI * (hour_f - 9.0) / 24.0) + 2.0 * math.sin(_TWO_PI * t / 432000.0)
        humidity = min(98.0, max(20.0, 65.0 - 2.5 * (temp - 12.0) + 5.0 * math.sin(_TWO_PI * t / 61000.0)))
        pressure = 101325.0 + 800.0 * math.sin(_TWO_PI * t / 302400.0) + 150.0 * math.sin(_TWO_PI * t / 32400.0)
        pm25 = 8.0 + (15.0 if (7 <= hour < 9 or 17 <= hour < 19) else 0.0) + self._episode(t)
        noise = 45.0 + 23.0 * _traffic(hour) + hashed(self.seed, int(t)).uniform(-3.0, 3.0)
        values = {
            "temperature_c": temp,
            "humidity": humidity,
            "pressure_pa": pressure,
            "pm25": pm25,
            "pm10": 1.7 * pm25 + 3.0,
            "noise_db": noise,
        }
        temp = self.bias_k
        if self.drift_k_per_day and self.drift_from is not None and t > self.drift_from:
            temp += self.drift_k_per_day * (t - self.drift_from) / 86400.0
        values["temperature_c"] += temp
        for key in self.fixed:
            values[key] = self.fixed[key]
        return values

    def _episode(self, t):
        slot = int(t // 21600.0)
        r = hashed(self.seed + 17, slot)
        if not r.chance(0.2):
            return 0.0
        peak = r.uniform(10.0, 40.0)
        centre = slot * 21600.0 + r.uniform(5400.0, 16200.0)
        half = r.uniform(1800.0, 5400.0)
        x = abs(t - centre)
        return peak * (1.0 - x / half) if x < half else 0.0
