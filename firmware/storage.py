"""Counters that survive a power cut: the sample sequence number, the energy meter and a role's totals.

One small JSON file, ``counters.json``: ``{"seq": R, "energy_wh": E, ...}``
(a role's own totals, e.g. the lamp's burning seconds, as further integer
keys). Every
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
- A role's totals (``add(name, n)``) are saved on the same schedule as the
  energy (60 s after they changed, 10 s after a ``note_change``), and
  ``saved(name)`` (what a role publishes) never goes backwards either. A power
  cut loses at most what was added in the last 60 s (10 s after a change).

:func:`atomic_write` is the write-then-rename step, :func:`read_json` and :func:`exists` the reading
side, for the node's other files (one copy of each in the node's RAM).

The boot record (:class:`BootRecord`): why the node booted, how often, and whether it is caught in a
crash loop.

``boot.json`` in flash: ``{"boots", "crashes", "watchdogs", "bad", "last"}``.
``last`` is what the previous run wrote about itself: ``"run"`` at boot,
``"crash"`` when an unexpected error is about to reset the node, ``"reboot"``
before a commanded reset. So at the next boot:

- ``"crash"`` -> ``BOOT_CRASH``; ``"reboot"`` -> ``BOOT_COMMAND``;
- ``"run"`` (the run ended without a word: the power went, or the watchdog or
  the reset pin struck) -> what the chip says (``board.reset_cause()``:
  power on, watchdog, other).

Crash loop: ``bad`` counts boots after a crash or a watchdog reset since the
node last ran healthily for ``HEALTHY_MS`` (a minute). At ``LOOP_BOOTS`` (3) the
node boots in safe mode: the role does not run, the outputs are put in their
safe state, and the node still answers Modbus with the ``safe_mode_crash_loop``
flag. Safe mode holds across reboots and power cuts until a master writes
``command`` = ``CMD_LEAVE_SAFE_MODE`` (a fault that crashed the node three
times is worth a look). Power cuts neither count nor clear ``bad``: a
flickering supply is not a firmware fault.

Two small writes per boot (at boot, and once healthy); none in between.
"""

import json
import os
import time

from protocols.roles.common import BOOT_COMMAND, BOOT_CRASH, BOOT_POWER_ON, BOOT_WATCHDOG

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
        self.totals = {}  # a role's totals: name -> value (saved or not)
        self._saved_totals = {}
        self._totals_dirty = False
        self.load()

    def load(self):
        """Read the counters (the file, else the complete temporary file, else zeros)."""
        data = _counters(self.path)
        if data is None:
            data = _counters(self._tmp)
        if data is None:
            # First boot, or both copies unreadable: the latter is worth a flag.
            self.error = exists(self.path)
            return
        self.reserved = data.get("seq", 0)
        self.seq = self.reserved
        self.energy_wh = data.get("energy_wh", 0)
        self._wh = self.energy_wh
        for key in data:
            value = data[key]
            if key != "seq" and key != "energy_wh" and isinstance(value, int) and value >= 0:
                self.totals[key] = value
                self._saved_totals[key] = value

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

    def add(self, name, n):
        """Add ``n`` to the role's total ``name`` (saved on the energy's schedule)."""
        if n:
            self.totals[name] = self.totals.get(name, 0) + n
            self._totals_dirty = True

    def saved(self, name):
        """The last saved value of total ``name``: what a role publishes (never goes backwards)."""
        return self._saved_totals.get(name, 0)

    def save_now(self):
        """Save everything accrued now (a commanded reboot, a planned power cut)."""
        self._save(max(self.reserved, self.seq), self._wh)

    def note_change(self):
        """The lamp's state changed (relay, dim): save the energy soon."""
        self._changed = True

    def tick(self, now_ms):
        """Save the energy if it is due (see the module docstring); call once per sample."""
        if self._wh <= self.energy_wh and not self._totals_dirty:
            return
        age = time.ticks_diff(now_ms, self._saved_ms)
        if age >= _SAVE_MS or (self._changed and age >= _SAVE_AFTER_CHANGE_MS):
            self._save(max(self.reserved, self.seq), self._wh)

    def _save(self, reserved, energy_wh):
        text = '{"seq": %d, "energy_wh": %d' % (reserved, energy_wh)
        totals = self.totals
        for key in totals:
            text += ', "%s": %d' % (key, totals[key])
        try:
            atomic_write(self.path, text + "}")
        except OSError:
            self.error = True
            return
        self.error = False
        self.reserved = reserved
        self.energy_wh = energy_wh
        if self._totals_dirty:
            self._saved_totals = dict(totals)
            self._totals_dirty = False
        self._saved_ms = time.ticks_ms()
        self._changed = False
        self.saves += 1


LOOP_BOOTS = const(3)
HEALTHY_MS = const(60000)


class BootRecord:
    """The persisted boot history; ``cause``: the chip's reset cause (``BOOT_*``) for a run that ended silently."""

    def __init__(self, path="boot.json", cause=BOOT_POWER_ON):
        self.path = path
        self.error = False
        d = read_json(path)
        if d is None:
            d = read_json(path + ".tmp")  # a rename cut short on FAT
        if d is None:
            d = {}
            self.error = exists(path)
        self.boots = _count(d, "boots") + 1
        self.crashes = _count(d, "crashes")
        self.watchdogs = _count(d, "watchdogs")
        self.bad = _count(d, "bad")
        last = d.get("last")
        if last == "crash":
            self.reason = BOOT_CRASH
        elif last == "reboot":
            self.reason = BOOT_COMMAND
        elif d:
            self.reason = cause
        else:
            self.reason = BOOT_POWER_ON  # first boot
        if self.reason == BOOT_CRASH:
            self.crashes += 1
        if self.reason == BOOT_WATCHDOG:
            self.watchdogs += 1
        if self.reason == BOOT_CRASH or self.reason == BOOT_WATCHDOG:
            self.bad += 1
        self.crash_loop = self.bad >= LOOP_BOOTS
        self.healthy = False
        self._save("run")

    def _save(self, last):
        text = '{"boots": %d, "crashes": %d, "watchdogs": %d, "bad": %d, "last": "%s"}' % (
            self.boots, self.crashes, self.watchdogs, self.bad, last)
        try:
            atomic_write(self.path, text)
        except OSError:
            self.error = True
            return
        self.error = False

    def ran(self, uptime_ms):
        """Call every sample: after ``HEALTHY_MS`` outside safe mode, the crash history is cleared."""
        if self.healthy or uptime_ms < HEALTHY_MS:
            return
        self.healthy = True
        if self.bad and not self.crash_loop:
            self.bad = 0
            self._save("run")

    def crashed(self):
        """An unexpected error is about to reset the node."""
        self._save("crash")

    def rebooting(self):
        """A commanded reset follows."""
        self._save("reboot")

    def leave_safe_mode(self):
        """Forget the crash history (the next boot runs the role again); a commanded reset follows."""
        self.bad = 0
        self.crash_loop = False
        self._save("reboot")


def _count(d, key):
    v = d.get(key, 0)
    return v if isinstance(v, int) and v >= 0 else 0


def atomic_write(path, data):
    """Replace ``path`` with ``data`` (str or bytes-like) so that a power cut leaves the old or the new file.

    Writes ``path + ".tmp"`` completely, then renames it over ``path``
    (readers fall back to the ``.tmp`` copy if a FAT rename was cut between
    its remove and its rename). Raises OSError.
    """
    tmp = path + ".tmp"
    with open(tmp, "wb" if not isinstance(data, str) else "w") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        os.remove(path)  # FAT cannot rename over a file
        os.rename(tmp, path)


def read_json(path):
    """The JSON object (dict) in file ``path``; None if it cannot be read, is not JSON or not an object."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _counters(path):
    data = read_json(path)
    if data is None:
        return None
    seq = data.get("seq")
    wh = data.get("energy_wh")
    if not isinstance(seq, int) or not isinstance(wh, int) or seq < 0 or wh < 0:
        return None
    return data


def exists(path):
    """True if file ``path`` exists (readable or not)."""
    try:
        os.stat(path)
    except OSError:
        return False
    return True
