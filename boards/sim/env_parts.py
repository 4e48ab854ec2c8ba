"""The virtual environment node's parts: a BME280 on I2C, an SDS011 on a UART, a sound-level module.

Built by the sensor host (:mod:`boards.sim.sensor_host`, a process of its own
that the virtual board starts the first time the firmware asks for one of
them), all in one weather (:mod:`boards.sim.weather`). Settings come from ``sim.json``
(at boot) and ``control.json`` (any time, read twice a second): ``"weather"``:
fixed values (``temperature_c``, ``humidity``, ``pressure_pa``, ``pm25``,
``pm10``, ``noise_db``; null gives a value back to the model); ``"bme280"``,
``"sds011"``, ``"sound"``: a fault of that part (see :mod:`boards.sim.bme280`,
:mod:`boards.sim.sds011`; the sound-level module: ``"open"`` reads 0 V,
``"short"`` 3.3 V), null when it works.
"""

import asyncio
import time

from .bme280 import SimBME280, SimI2C
from .flash import Control
from .sds011 import SimSDS011
from .weather import WeatherPhysics

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_ENV_STEP_MS = const(500)
_BME280_ADDRESS = const(0x76)


class EnvParts:
    """A BME280 on I2C, an SDS011 on a UART and a sound-level module, all in one weather."""

    name = "weather"

    def __init__(self, cfg):
        self.weather = WeatherPhysics(cfg.get("seed", 0))
        self.weather.configure(cfg.get("weather") or {})
        self.bme280 = SimBME280(self._climate, fault=cfg.get("bme280"))
        self.bus = SimI2C({_BME280_ADDRESS: self.bme280})
        self.uart = SimSDS011(self._dust, fault=cfg.get("sds011"), seed=cfg.get("seed", 0))
        self.sound_fault = cfg.get("sound")
        self._control = Control()
        self._apply(self._control.poll())

    def _apply(self, ctl):
        if ctl is None:
            return
        if isinstance(ctl.get("weather"), dict):
            self.weather.configure(ctl["weather"])
        if "bme280" in ctl:
            self.bme280.fault = ctl["bme280"]
        if "sds011" in ctl:
            self.uart.fault = ctl["sds011"]
        if "sound" in ctl:
            self.sound_fault = ctl["sound"]

    def _now(self):
        return self.weather.at(time.time())

    def _climate(self):
        v = self._now()
        return v["temperature_c"], v["humidity"], v["pressure_pa"]

    def _dust(self):
        v = self._now()
        return v["pm25"], v["pm10"]

    def i2c(self):
        """The sensor I2C bus (a BME280 at 0x76)."""
        return self.bus

    def sensor_uart(self):
        """The dust sensor's UART (an SDS011, 9600 8N1), non-blocking like machine.UART(timeout=0)."""
        return self.uart

    def sound_uv(self):
        """The sound-level module's output in microvolts: 20 mV per dB(A) (0.6 V at 30 dB .. 2.6 V at 130 dB)."""
        if self.sound_fault == "open":
            return 0
        if self.sound_fault == "short":
            return 3300000
        return int(self._now()["noise_db"] * 20000.0 + 0.5)

    def apply_control(self):
        """Apply what changed in control.json (the sensor host calls it twice a second)."""
        self._apply(self._control.poll())

    async def run(self):
        """Apply control.json changes twice a second."""
        while True:
            self.apply_control()
            await asyncio.sleep_ms(_ENV_STEP_MS)

    def snapshot(self):
        """The weather now and the parts' health, for world.json."""
        state = self._now()
        state["bme280"] = self.bme280.fault
        state["sds011"] = self.uart.fault
        state["sound"] = self.sound_fault
        state["bme280_conversions"] = self.bme280.conversions
        state["bme280_last"] = self.bme280.last_physical
        return state
