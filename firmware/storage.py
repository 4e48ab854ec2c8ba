"""Counters that survive a power cut: the sample sequence number and the energy meter.

One small JSON file, ``counters.json``: ``{"seq": R, "energy_wh": E}``. Every
save writes ``counters.json.tmp`` completely, then renames it over
``counters.json``: rename is atomic on POSIX and on LittleFS (the ESP32's
default filesystem), so a power cut at any instant leaves either the old or the
new file. On a filesystem where rename cannot replace (FAT), the old file is
removed first and :func:`Storage.load` falls back to the complete temporary
file.

Guarantees, and what a power cut may cost:

- ``seq`` never repeats. Numbers are handed out from a reserved block: before
  using any value up to R, R is saved; after a reboot counting restarts at R.
  A reboot skips at most ``seq_block`` - 1 numbers (gaps are allowed; repeats
  are not). One flash write per ``seq_block`` samples.
- ``energy_wh`` (the register) never goes backwards: the node publishes the
  last *saved* whole watt-hours. Energy is integrated exactly in integer units
  of 0.1 W x 1 ms (float-free: the ESP32's floats are single precision), and
  saved when a whole Wh has accrued and 60 s have passed since the last save,
  or 10 s after a relay or dim change (``note_change``). A power cut loses what
  accrued since the last save: at most 60 s of consumption (about 1.1 Wh for a
  full-power 60 W lamp) plus the sub-Wh remainder (< 1 Wh). At most one flash
  write per Wh and per 10 s.
"""

import json
import os
import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


SEQ_BLOCK = const(100)
_UNITS_PER_WH = const(36000000)  # 0.1 W x 1 ms units in one Wh
_SAVE_MS = const(60000)
_SAVE_AFTER_CHANGE_MS = const(10000)


class Storage:
    """The persisted counters of one node; ``error`` is True when the last save failed."""

    def __init__(self, path="counters.json", seq_block=SEQ_BLOCK):
        self.path = path
        self._tmp = path + ".tmp"
        self.seq_block = seq_block
        self.seq = 0  # next sequence number to hand out
        self.reserved = 0  # numbers below this are covered by the file
        self.energy_wh = 0  # saved whole Wh: the published value
        self._wh = 0  # whole Wh accrued (saved or not)
        self._units = 0  # remainder below one Wh, in 0.1 W x 1 ms
        self._saved_ms = time.ticks_ms()
        self._changed = False
        self.error = False
        self.saves = 0
        self.load()

    def load(self):
        """Read the counters (the file, else the complete temporary file, else zeros)."""
        data = _read(self.path)
        if data is None:
            data = _read(self._tmp)
        if data is None:
            # First boot, or both copies unreadable: the latter is worth a flag.
            self.error = _exists(self.path)
            return
        self.reserved = data.get("seq", 0)
        self.seq = self.reserved
        self.energy_wh = data.get("energy_wh", 0)
        self._wh = self.energy_wh

    def next_seq(self):
        """The next sequence number; saves a new reservation first when the block is used up."""
        if self.seq >= self.reserved:
            self._save(self.seq + self.seq_block, self._wh)
        s = self.seq
        self.seq = s + 1
        return s

    def add_energy(self, power_dw, dt_ms):
        """Integrate ``power_dw`` (0.1 W units) over ``dt_ms`` milliseconds."""
        units = self._units + power_dw * dt_ms
        if units >= _UNITS_PER_WH:
            whole = units // _UNITS_PER_WH
            self._wh += whole
            units -= whole * _UNITS_PER_WH
        self._units = units

    def note_change(self):
        """The lamp's state changed (relay, dim): save the energy soon."""
        self._changed = True

    def tick(self, now_ms):
        """Save the energy if it is due (see the module docstring); call once per sample."""
        if self._wh <= self.energy_wh:
            return
        age = time.ticks_diff(now_ms, self._saved_ms)
        if age >= _SAVE_MS or (self._changed and age >= _SAVE_AFTER_CHANGE_MS):
            self._save(max(self.reserved, self.seq), self._wh)

    def _save(self, reserved, energy_wh):
        try:
            with open(self._tmp, "w") as f:
                f.write('{"seq": %d, "energy_wh": %d}' % (reserved, energy_wh))
            try:
                os.rename(self._tmp, self.path)
            except OSError:
                os.remove(self.path)  # FAT cannot rename over a file
                os.rename(self._tmp, self.path)
        except OSError:
            self.error = True
            return
        self.error = False
        self.reserved = reserved
        self.energy_wh = energy_wh
        self._saved_ms = time.ticks_ms()
        self._changed = False
        self.saves += 1


def _read(path):
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    seq = data.get("seq")
    wh = data.get("energy_wh")
    if not isinstance(seq, int) or not isinstance(wh, int) or seq < 0 or wh < 0:
        return None
    return data


def _exists(path):
    try:
        os.stat(path)
    except OSError:
        return False
    return True
