"""The lamp role: drive the relay and dimmer from the holding registers, meter into the inputs.

Power-up state: relay closed, 100 % (a street light that boots, or reboots,
lights the street; the gateway dims it afterwards). Every sample reads the
meter and the driver thermometer, integrates energy, takes a fresh sequence
number and publishes every input register.

Status flags (``protocols.roles.lamp.STATUS_*``): ``lamp_on`` relay closed and
at least 1 W drawn; ``lamp_failure`` relay closed, level > 0, under 1 W for two
samples in a row (one sample may fall inside the driver's soft start);
``over_temperature`` above 85 C; ``safe_mode``; ``storage_error``.
"""

import time

from protocols.roles.lamp import (
    FIRMWARE_VERSION,
    MAP,
    ROLE_ID,
    STATUS_LAMP_FAILURE,
    STATUS_LAMP_ON,
    STATUS_OVER_TEMPERATURE,
    STATUS_SAFE_MODE,
    STATUS_STORAGE_ERROR,
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_MIN_ON_DW = const(10)  # 1 W in 0.1 W
_OVER_TEMP_DC = const(850)  # 85 C in 0.1 C
_TEMP_MIN_DC = const(-400)
_TEMP_MAX_DC = const(1250)
_U16_MAX = const(0xFFFF)
_FAILURE_SAMPLES = const(2)

__all__ = ["MAP", "Role"]


class Role:
    """One lamp controller: ``start()`` once; ``on_write`` from the bank; ``sample(now_ms)``."""

    def __init__(self, board, bank, store, safe_mode=False):
        self.board = board
        self.bank = bank
        self.store = store
        self.safe_mode = safe_mode
        self._last_ms = None
        self._uptime_ms = 0
        self._dark = 0  # consecutive samples with the lamp on but no power

    def start(self):
        """Apply the power-up state and publish the fixed registers."""
        bank = self.bank
        bank.set("relay", 1)
        bank.set("dim_level", 100)
        bank.set("role", ROLE_ID)
        bank.set("firmware", FIRMWARE_VERSION)
        bank.set("energy", self.store.energy_wh)
        self._apply()

    def on_write(self, names):
        """A master wrote holding registers ``names``: make the hardware follow."""
        self._apply()
        self.store.note_change()

    def _apply(self):
        bank = self.bank
        self.board.relay(bank.get("relay") == 1)
        self.board.dimmer(bank.get("dim_level"))

    def sample(self, now_ms):
        """Read the meter and thermometer; update every input register."""
        board = self.board
        bank = self.bank
        store = self.store
        voltage, current, power = board.read_meter()
        temp = board.read_temperature()
        power_dw = _clamp(int(power * 10 + 0.5), 0, _U16_MAX)
        if self._last_ms is not None:
            dt = time.ticks_diff(now_ms, self._last_ms)
            store.add_energy(power_dw, dt)
            self._uptime_ms += dt
        self._last_ms = now_ms
        store.tick(now_ms)
        temp_dc = _clamp(int(temp * 10 + (0.5 if temp >= 0 else -0.5)), _TEMP_MIN_DC, _TEMP_MAX_DC)

        status = 0
        relay = bank.get("relay") == 1
        if relay and power_dw >= _MIN_ON_DW:
            status |= STATUS_LAMP_ON
        if relay and bank.get("dim_level") > 0 and power_dw < _MIN_ON_DW:
            self._dark += 1
            if self._dark >= _FAILURE_SAMPLES:
                status |= STATUS_LAMP_FAILURE
        else:
            self._dark = 0
        if temp_dc > _OVER_TEMP_DC:
            status |= STATUS_OVER_TEMPERATURE
        if self.safe_mode:
            status |= STATUS_SAFE_MODE

        seq = store.next_seq()
        if store.error:
            status |= STATUS_STORAGE_ERROR
        bank.set("seq", seq)
        bank.set("power", power_dw)
        bank.set("voltage", _clamp(int(voltage * 10 + 0.5), 0, _U16_MAX))
        bank.set("current", _clamp(int(current * 1000 + 0.5), 0, _U16_MAX))
        bank.set("energy", store.energy_wh)
        bank.set("temperature", temp_dc)
        bank.set("status", status)
        bank.set("uptime", self._uptime_ms // 1000)


def _clamp(x, lo, hi):
    return lo if x < lo else hi if x > hi else x
