"""The water meter role: pulses to litres, flow, and the meter's alarms.

Hardware (through the board): ``pulse_input(counter)`` feeds the reed
switches' edges to a :class:`~firmware.pulses.PulseCounter`;
``has_direction`` says whether a second reed gives the direction;
``tamper()`` (a Hall sensor saturated by an external magnet), and
``battery_mv()``. Settings are the holding registers of
``protocols.roles.meter``, persisted by :class:`~firmware.settings.Settings`.

Volumes. The counter counts turns in RAM (an interrupt handler cannot write
flash, and flash must not be written per pulse). Each sample converts new
turns into millilitres with the pulse volume in force, and the totals are saved
(a CRC-checked record, alternately in two slots of the board's store, so a
torn write loses only itself) when any of these holds:

- ``SAVE_PULSES`` turns are waiting;
- the flow paused: no turn for ``_IDLE_SAVE_MS``;
- the oldest waiting turn is ``_SAVE_MS`` old.

The ``volume`` and ``reverse_volume`` registers publish the *saved* whole
litres, so they never go backwards, not even across a power cut. What a power
cut costs is what was waiting (the ``pending`` register): at most
``SAVE_PULSES - 1`` turns plus those counted during one sample period (the
check runs once per sample), i.e. ``SAVE_PULSES - 1 + ceil(f * sample_s)`` for
a flow of ``f`` turns per second; plus at most one turn in progress when the
power went (the magnet was on the reed: it had not been counted yet and will
not be, the next boot arms on the next open). With 1 l pulses, a 1 s sample
and a household meter's largest flow (Q4 = 4 m3/h: 1.1 turns/s) that is at
most 9 + 2 + 1 = 12 l. Flash writes: at most one per ``SAVE_PULSES`` turns,
plus one per pause in the flow, plus one per ``_SAVE_MS`` of slow flow.

Alarms (status bits of ``protocols.roles.meter``), each raised and cleared
by its condition; every change is logged as ``EV_ALARM_ON``/``EV_ALARM_OFF``
(value: the bit) once the node's event log is wired in (``self.events``):

- leak: the flow has not paused (no gap of ``leak_gap`` between turns) for
  ``leak_time``; clears when it pauses;
- burst: flow above ``burst_flow`` for ``burst_time``; clears after
  ``burst_time`` at or below;
- backflow: ``backflow_limit`` flowed backwards, the last of it less than
  ``leak_gap`` ago; clears ``leak_gap`` after the last backward turn;
- tamper: the Hall sensor saw a magnet in two samples in a row; clears after
  two samples without;
- low battery: below ``battery_low`` for three samples; clears above
  ``battery_low`` + 100 mV for three samples.
"""

import struct
import time

from firmware.pulses import PulseCounter
from firmware.roles.base import SettingsRole, debounce
from firmware.roles.base import registers as _registers
from protocols.modbus.crc import crc16
from protocols.roles.meter import (
    DEFAULTS,
    FIRMWARE_VERSION,
    ROLE_ID,
    STATUS_BACKFLOW,
    STATUS_BURST,
    STATUS_FLOWING,
    STATUS_LEAK,
    STATUS_LOW_BATTERY,
    STATUS_NO_DIRECTION,
    STATUS_STORAGE_ERROR,
    STATUS_TAMPER,
)

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


if False:  # type checkers only: the board this image is built for (tools/check_esp32.py)
    import board

SAVE_PULSES = const(10)
_IDLE_SAVE_MS = const(3000)
_SAVE_MS = const(60000)
_RETRY_MS = const(10000)
_RATE_SPAN_MS = const(1000)  # shortest time over which a flow rate is taken
_STOPPED_PERIODS = const(3)
_TAMPER_SAMPLES = const(2)
_BATTERY_SAMPLES = const(3)
_BATTERY_HYSTERESIS_MV = const(100)
_U16_MAX = const(0xFFFF)
_U32_MAX = const(0xFFFFFFFF)
_RECORD = const(">IIHIH")  # generation, forward l, forward ml, reverse l, reverse ml; then a CRC-16
_RECORD_SIZE = const(18)
_SLOTS = ("meter0", "meter1")

# The node releases protocols.roles.meter (and .common) once the bank has packed the rows: this module
# keeps copies of the numbers it uses, not the modules.
RELEASE_TABLES = True

__all__ = ["FIRMWARE_VERSION", "RELEASE_TABLES", "ROLE_ID", "SAVE_PULSES", "Role", "Volumes", "registers"]


def registers():
    """The water meter's register rows (``protocols.roles.meter.REGISTERS``), for the node's bank."""
    return _registers("meter")


class Volumes:
    """Forward and reverse totals (litres + millilitres), saved in two alternating CRC-checked slots."""

    def __init__(self, board: "board.Board"):
        self.board = board
        self.forward_l = 0
        self.forward_ml = 0
        self.reverse_l = 0
        self.reverse_ml = 0
        self.saved_forward_l = 0  # what the registers publish
        self.saved_reverse_l = 0
        self.generation = 0
        self.error = False
        self.saves = 0

    def load(self):
        """Take the newest valid slot; False (and ``error``) if a slot exists but none is valid."""
        best = None
        seen = False
        for key in _SLOTS:
            try:
                data = self.board.persist_read(key)
            except OSError:
                data = None
            if data is None:
                continue
            seen = True
            rec = _decode(data)
            if rec is not None and (best is None or rec[0] > best[0]):
                best = rec
        if best is None:
            self.error = seen
            return not seen
        self.generation, self.forward_l, self.forward_ml, self.reverse_l, self.reverse_ml = best
        self.saved_forward_l = self.forward_l
        self.saved_reverse_l = self.reverse_l
        return True

    def add(self, forward_turns, reverse_turns, pulse_ml):
        """Count new turns at ``pulse_ml`` millilitres each."""
        if forward_turns:
            ml = self.forward_ml + forward_turns * pulse_ml
            self.forward_l += ml // 1000
            self.forward_ml = ml % 1000
        if reverse_turns:
            ml = self.reverse_ml + reverse_turns * pulse_ml
            self.reverse_l += ml // 1000
            self.reverse_ml = ml % 1000

    def save(self):
        """Write the totals to the older slot; True on success."""
        gen = self.generation + 1
        body = struct.pack(
            _RECORD, gen, self.forward_l & _U32_MAX, self.forward_ml, self.reverse_l & _U32_MAX, self.reverse_ml
        )
        try:
            self.board.persist_write(_SLOTS[gen & 1], body + struct.pack(">H", crc16(body)))
        except OSError:
            self.error = True
            return False
        self.generation = gen
        self.saved_forward_l = self.forward_l
        self.saved_reverse_l = self.reverse_l
        self.error = False
        self.saves += 1
        return True


def _decode(data):
    if len(data) != _RECORD_SIZE:
        return None
    if crc16(data[:-2]) != struct.unpack(">H", data[-2:])[0]:
        return None
    rec = struct.unpack(_RECORD, data[:-2])
    if rec[2] >= 1000 or rec[4] >= 1000:
        return None
    return rec


class Role(SettingsRole):
    """One water meter: ``start()`` once; ``on_write`` from the bank; ``sample(now_ms)``."""

    def __init__(self, board: "board.Board", bank, store, safe_mode=False):
        SettingsRole.__init__(self, board, bank, store, "meter_set", DEFAULTS, safe_mode)
        self.volumes = Volumes(board)
        self.direction = bool(getattr(board, "has_direction", False))
        self.counter = PulseCounter(20, self.direction)
        self._seen_fwd = 0
        self._seen_rev = 0
        self._pending = 0  # turns counted since the last successful save
        self._pending_since = time.ticks_ms()
        self._last_turn_ms = None  # when a turn was last seen by a sample (any direction)
        self._flow_start = None  # first turn of the present flow episode
        self._rate_ref = None  # (turns, ticks of the last of them) for the flow rate
        self._flow = 0  # ml/s
        self._period = 0  # ms between turns at the last measured flow
        self._burst_ms = 0
        self._calm_ms = 0
        self._reverse_ml = 0  # backward millilitres of the present backflow episode
        self._reverse_ms = None
        self._tamper = 0
        self._battery = 0
        self._battery_mv = 0
        self._retry_at = None
        self._last_ms = None

    def start(self, now_ms=None):
        """Load settings and volumes, publish them, start counting."""
        now = time.ticks_ms() if now_ms is None else now_ms
        self.settings.load()
        self.volumes.load()
        self.counter.debounce_ms = self.bank.get("debounce")
        self._publish_volumes()
        self._last_ms = now
        self._pending_since = now
        self.board.pulse_input(self.counter)
        self.start_radio("meter")

    def settings_written(self, names, now_ms):
        """A new debounce applies from now on."""
        self.counter.debounce_ms = self.bank.get("debounce")

    def sample(self, now_ms):
        """Turns to litres, flow, alarms, saves; update every input register."""
        bank = self.bank
        counter = self.counter
        dt = time.ticks_diff(now_ms, self._last_ms) if self._last_ms is not None else 0
        self._last_ms = now_ms
        fwd = counter.forward
        rev = counter.reverse
        last = counter.last_ms
        d_fwd = fwd - self._seen_fwd
        d_rev = rev - self._seen_rev
        self._seen_fwd = fwd
        self._seen_rev = rev
        turns = d_fwd + d_rev
        pulse_ml = bank.get("pulse_volume")
        gap_ms = bank.get("leak_gap") * 1000
        if turns:
            self.volumes.add(d_fwd, d_rev, pulse_ml)
            if not self._pending:
                self._pending_since = now_ms
            self._pending += turns
            self._last_turn_ms = last
            if self._flow_start is None:
                self._flow_start = last
        self._rate(now_ms, fwd + rev, last, turns, pulse_ml, gap_ms)
        if self._last_turn_ms is not None and time.ticks_diff(now_ms, self._last_turn_ms) >= gap_ms:
            self._flow_start = None
            self._last_turn_ms = None
        self._save_if_due(now_ms)

        status = self._alarms(now_ms, dt, d_rev, pulse_ml, gap_ms)
        bank.set("flow", min(self._flow, _U16_MAX))
        bank.set("pending", min(self._pending, _U16_MAX))
        duration = 0
        if self._flow_start is not None:
            duration = max(0, time.ticks_diff(now_ms, self._flow_start)) // 1000
        bank.set("flow_duration", duration)
        bank.set("battery", min(self._battery_mv, _U16_MAX))
        self._publish_volumes()
        self.finish(now_ms, status, STATUS_FLOWING | STATUS_NO_DIRECTION, STATUS_STORAGE_ERROR)

    # -- flow ------------------------------------------------------------

    def _rate(self, now_ms, total, last, turns, pulse_ml, gap_ms):
        ref = self._rate_ref
        if turns:
            if ref is None:
                self._rate_ref = (total, last)  # first turn after a pause: no period yet
                return
            span = time.ticks_diff(last, ref[1])
            if span >= _RATE_SPAN_MS or (span > 0 and total - ref[0] >= 4):
                self._flow = (total - ref[0]) * pulse_ml * 1000 // span
                self._period = span // (total - ref[0])
                self._rate_ref = (total, last)
            return
        if ref is None:
            self._flow = 0
            return
        since = time.ticks_diff(now_ms, self._last_turn_ms)  # since the latest turn
        if since >= gap_ms:
            self._flow = 0
            self._rate_ref = None
        elif since >= _STOPPED_PERIODS * self._period and since >= _RATE_SPAN_MS:
            self._flow = 0  # three pulse periods without a pulse: the water stopped (or slowed a lot)
        elif since > 0:
            # No turn for `since` ms: the flow is at most one turn in that time.
            self._flow = min(self._flow, pulse_ml * 1000 // since)

    # -- persistence -----------------------------------------------------

    def _save_if_due(self, now_ms):
        if not self._pending:
            return
        if self._retry_at is not None and time.ticks_diff(now_ms, self._retry_at) < 0:
            return
        idle = self._last_turn_ms is None or time.ticks_diff(now_ms, self._last_turn_ms) >= _IDLE_SAVE_MS
        if (
            self._pending >= SAVE_PULSES
            or idle
            or time.ticks_diff(now_ms, self._pending_since) >= _SAVE_MS
        ):
            self.save(now_ms)

    def save(self, now_ms=None):
        """Save the volumes now (also what a planned shutdown calls); True on success."""
        if self.volumes.save():
            self._pending = 0
            self._retry_at = None
            return True
        self._retry_at = time.ticks_add(time.ticks_ms() if now_ms is None else now_ms, _RETRY_MS)
        return False

    def _publish_volumes(self):
        v = self.volumes
        self.bank.set("volume", v.saved_forward_l & _U32_MAX)
        self.bank.set("reverse_volume", v.saved_reverse_l & _U32_MAX)

    # -- alarms ----------------------------------------------------------

    def _alarms(self, now_ms, dt, d_rev, pulse_ml, gap_ms):
        bank = self.bank
        board = self.board
        old = self.status
        status = 0
        if self._flow_start is not None:
            status |= STATUS_FLOWING
            if time.ticks_diff(now_ms, self._flow_start) >= bank.get("leak_time") * 1000:
                status |= STATUS_LEAK

        hold_ms = bank.get("burst_time") * 1000
        if self._flow > bank.get("burst_flow"):
            self._burst_ms += dt
            self._calm_ms = 0
        else:
            self._calm_ms += dt
            self._burst_ms = 0
        burst = old & STATUS_BURST
        if self._burst_ms >= hold_ms:
            burst = STATUS_BURST
        elif self._calm_ms >= hold_ms:
            burst = 0
        status |= burst

        if d_rev:
            self._reverse_ml += d_rev * pulse_ml
            self._reverse_ms = now_ms
        if self._reverse_ms is not None and time.ticks_diff(now_ms, self._reverse_ms) >= gap_ms:
            self._reverse_ml = 0
            self._reverse_ms = None
        if self._reverse_ml >= bank.get("backflow_limit") * 100:
            status |= STATUS_BACKFLOW
        if not self.direction:
            status |= STATUS_NO_DIRECTION

        self._tamper = debounce(self._tamper, bool(board.tamper()), _TAMPER_SAMPLES)
        if self._tamper >= _TAMPER_SAMPLES or (self._tamper > 0 and old & STATUS_TAMPER):
            status |= STATUS_TAMPER

        mv = int(board.battery_mv())
        self._battery_mv = mv
        low = bank.get("battery_low")
        was_low = old & STATUS_LOW_BATTERY
        cond = mv < low + (_BATTERY_HYSTERESIS_MV if was_low else 0)
        self._battery = debounce(self._battery, cond, _BATTERY_SAMPLES)
        if self._battery >= _BATTERY_SAMPLES or (was_low and self._battery > 0):
            status |= STATUS_LOW_BATTERY

        if self.volumes.error:
            status |= STATUS_STORAGE_ERROR  # the settings' save failing adds it too (finish)
        return status
