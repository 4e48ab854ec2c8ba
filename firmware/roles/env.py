"""The environment role: climate (BME280), dust (SDS011) and noise, each sensor on its own schedule.

Hardware (through the board): ``i2c()`` with a BME280 at 0x76,
``sensor_uart()`` with an SDS011 (9600 8N1, non-blocking reads),
``sound_uv()``: the output of a sound-level module (20 mV per dB(A), 0.6 V at
30 dB to 2.6 V at 130 dB). Settings: the holding registers of
``protocols.roles.env``, persisted by :class:`~firmware.settings.Settings`.

Nothing here blocks: every sample (``sample_ms``, 1 s) advances each sensor's
small state machine by one step.

- Climate, every ``climate_period`` s: start a forced conversion; at the next
  sample, if the status register says it is done, read and compensate it;
  a chip that does not answer is looked for again (chip id, trimming) at the
  next period. Fault: the last attempt failed (no answer, wrong chip id, not
  done after 3 samples, skipped channels).
- Dust, every ``pm_period`` s: query (query mode, set at start); the answer is
  expected within 3 samples. From ``pm_period`` >= 60 s the sensor sleeps
  between readings and is woken 30 s before the query (its fan needs that
  long to draw fresh air). Fault: the last two queries went unanswered or
  were answered with bad frames only.
- Noise, every sample: outside 0.5..2.7 V the module is not connected (or
  shorted): fault.

Values keep their last good reading while their sensor is at fault; each
fault change is logged as ``EV_ALARM_ON``/``EV_ALARM_OFF`` (value: the bit)
once the node's event log is wired in (``self.events``).
"""

import time

from firmware.bme280 import BME280
from firmware.roles.base import SettingsRole, clamp
from firmware.roles.base import registers as _registers
from firmware.sds011 import SDS011
from protocols.roles.env import (
    DEFAULTS,
    FIRMWARE_VERSION,
    ROLE_ID,
    STATUS_CLIMATE_FAULT,
    STATUS_NOISE_FAULT,
    STATUS_PM_FAULT,
    STATUS_PM_SLEEPING,
    STATUS_STORAGE_ERROR,
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


if False:  # type checkers only: the board this image is built for (tools/check_esp32.py)
    import board

_CLIMATE_WAIT_SAMPLES = const(3)
_PM_WAIT_SAMPLES = const(3)
_PM_MISSES = const(2)
_PM_SLEEP_FROM_S = const(60)
_PM_WARMUP_MS = const(30000)
_NOISE_MIN_UV = const(500000)
_NOISE_MAX_UV = const(2700000)
_UV_PER_DECIBEL_TENTH = const(2000)
_U16_MAX = const(0xFFFF)
_DUE = const(0)  # indexes of the sensors' timing lists (Role._climate, Role._pm)
_WAIT = const(1)
_SEEN = const(2)
_MISSES = const(3)
_UNANSWERED = const(4)

# The node releases protocols.roles.env (and .common) once the bank has packed the rows: this module
# keeps copies of the numbers it uses, not the modules.
RELEASE_TABLES = True

__all__ = ["FIRMWARE_VERSION", "RELEASE_TABLES", "ROLE_ID", "Role", "registers"]


def registers():
    """The environment node's register rows (``protocols.roles.env.REGISTERS``), for the node's bank."""
    return _registers("env")


class Role(SettingsRole):
    """One environment node: ``start()`` once; ``on_write`` from the bank; ``sample(now_ms)``."""

    def __init__(self, board: "board.Board", bank, store, safe_mode=False):
        SettingsRole.__init__(self, board, bank, store, "env_set", DEFAULTS, safe_mode)
        self.climate = BME280(board.i2c())
        self.dust = SDS011(board.sensor_uart())
        self._faults = 0
        # Each sensor's timing in one list (indexes _DUE, _WAIT, ...): fewer attribute names in the node's RAM.
        # _DUE: ticks of the next conversion start / query; _WAIT: samples waited for a conversion / an
        # answer, -1 when none is running; the dust sensor's _SEEN: parser.measurements when the query went
        # out, _MISSES: queries unanswered in a row, _UNANSWERED: in all.
        self._climate = [None, -1]
        self._pm = [None, -1, 0, 0, 0]
        self._pm_asleep = False
        self._pm_woken = False

    def start(self, now_ms=None):
        """Load settings, look for the sensors, schedule the first readings now."""
        now = time.ticks_ms() if now_ms is None else now_ms
        self.settings.load()
        if not self.climate.begin():
            self._faults |= STATUS_CLIMATE_FAULT
        self.dust.set_query_mode()
        self.dust.wake()  # it may have been left asleep by a previous boot
        self._climate[_DUE] = now
        self._pm[_DUE] = now
        self.start_radio("env")

    def settings_written(self, names, now_ms):
        """New periods: start over with them."""
        if "climate_period" in names:
            self._climate[_DUE] = now_ms
        if "pm_period" in names:
            self._pm[_DUE] = now_ms
            if self._pm_asleep:
                self._wake()

    def sample(self, now_ms):
        """Advance each sensor by one step; publish every input register."""
        self._sample_climate(now_ms)
        self._sample_dust(now_ms)
        self._sample_noise()
        bank = self.bank
        bank.set("climate_errors", min(self.climate.errors, _U16_MAX))
        bank.set("pm_errors", min(self.dust.parser.bad_frames + self._pm[_UNANSWERED], _U16_MAX))
        status = self._faults
        if self._pm_asleep:
            status |= STATUS_PM_SLEEPING
        self.finish(now_ms, status, STATUS_PM_SLEEPING, STATUS_STORAGE_ERROR)

    # -- climate -------------------------------------------------------------

    def _sample_climate(self, now):
        sensor = self.climate
        if self._climate[_WAIT] >= 0:
            if sensor.ready():
                self._climate[_WAIT] = -1
                values = sensor.read()
                if values is None:
                    self._faults |= STATUS_CLIMATE_FAULT
                else:
                    self._publish_climate(values)
                    self._faults &= ~STATUS_CLIMATE_FAULT
            else:
                self._climate[_WAIT] += 1
                if self._climate[_WAIT] >= _CLIMATE_WAIT_SAMPLES or sensor.fault:
                    if not sensor.fault:
                        sensor.not_ready()
                    self._climate[_WAIT] = -1
                    self._faults |= STATUS_CLIMATE_FAULT
        if self._climate[_WAIT] < 0 and time.ticks_diff(now, self._climate[_DUE]) >= 0:
            self._climate[_DUE] = time.ticks_add(now, self.bank.get("climate_period") * 1000)
            if sensor.start():
                self._climate[_WAIT] = 0
            else:
                self._faults |= STATUS_CLIMATE_FAULT

    def _publish_climate(self, values):
        t, p, h = values
        bank = self.bank
        t += bank.get("temperature_offset")
        bank.set("temperature", clamp(t, -4000, 8500))
        bank.set("humidity", clamp((h * 100 + 512) >> 10, 0, 10000))
        bank.set("pressure", clamp((p * 10 + 128) >> 8, 0, 1100000))

    # -- dust ------------------------------------------------------------------

    def _wake(self):
        self.dust.wake()
        self._pm_asleep = False
        self._pm_woken = True

    def _sample_dust(self, now):
        dust = self.dust
        period_ms = self.bank.get("pm_period") * 1000
        sleepy = period_ms >= _PM_SLEEP_FROM_S * 1000
        dust.poll()
        parser = dust.parser
        if self._pm[_WAIT] >= 0:
            if parser.measurements != self._pm[_SEEN]:
                self._pm[_WAIT] = -1
                self._pm[_MISSES] = 0
                self._faults &= ~STATUS_PM_FAULT
                bank = self.bank
                pm25 = parser.pm25
                pm10 = parser.pm10
                if pm25 is not None and pm10 is not None:
                    bank.set("pm25", min(pm25, 9999))
                    bank.set("pm10", min(pm10, 9999))
                if sleepy:
                    dust.sleep()
                    self._pm_asleep = True
                    self._pm_woken = False
            else:
                self._pm[_WAIT] += 1
                if self._pm[_WAIT] >= _PM_WAIT_SAMPLES:
                    self._pm[_WAIT] = -1
                    self._pm[_UNANSWERED] += 1
                    self._pm[_MISSES] += 1
                    if self._pm[_MISSES] >= _PM_MISSES:
                        self._faults |= STATUS_PM_FAULT
                    self._pm_woken = False  # it may be asleep: wake it before the next query
        if self._pm[_WAIT] >= 0:
            return
        until = time.ticks_diff(self._pm[_DUE], now)
        if sleepy and not self._pm_woken and until <= _PM_WARMUP_MS:
            self._wake()
        if until <= 0:
            if not sleepy and not self._pm_woken:
                self._wake()
            self._pm[_DUE] = time.ticks_add(now, period_ms)
            self._pm[_SEEN] = parser.measurements
            if dust.query():
                self._pm[_WAIT] = 0

    # -- noise -----------------------------------------------------------------

    def _sample_noise(self):
        uv = self.board.sound_uv()
        if uv < _NOISE_MIN_UV or uv > _NOISE_MAX_UV:
            self._faults |= STATUS_NOISE_FAULT
            return
        self._faults &= ~STATUS_NOISE_FAULT
        db10 = uv // _UV_PER_DECIBEL_TENTH + self.bank.get("noise_offset")
        self.bank.set("noise", clamp(db10, 0, 1500))
