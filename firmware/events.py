"""The node's event log: alarms and state changes, numbered for good, kept in a bounded ring in flash.

An event is ``(seq, time, code, value)`` packed as ``>IIHi`` (14 bytes, which
are also its seven register words, high words first): ``seq`` never repeats
across reboots, ``time`` is the clock's epoch seconds, or the seconds since
boot while the clock is not set (below ``CLOCK_MIN``: see
:meth:`EventLog.retime`), ``code``/``value`` as in ``protocols.roles.common``.

Ring. ``capacity`` events in one preallocated bytearray; when it is full the
oldest is overwritten, and ``lost`` counts overwritten events the master had
not acknowledged (seq >= the highest ``event_from`` it wrote).

Sequence numbers are reserved in blocks (as ``firmware.storage`` does for
samples): before handing out a seq at or above the persisted reservation, the
log saves itself with the reservation raised by ``block``. After a reboot the
numbering restarts at the reservation: a power cut leaves a gap of fewer than
``block`` numbers, never a repeat.

Flash. The file (``events.bin``) is a 20-byte header (magic ``SEL1``,
capacity, count, reservation, lost, acknowledged), the events oldest first,
and a CRC-32 of all that; it is written whole to ``events.bin.tmp`` and
renamed over the old one (:func:`firmware.storage.atomic_write`), so a power
cut leaves the old or the new log. Wear: a write when the reservation runs
out (one per ``block`` events), otherwise ``flush_ms`` after the first
unsaved event (batching a burst into one write), or on :meth:`flush`. What a
power cut can cost: the events of the last ``flush_ms`` (30 s); a master that
read them keeps them, and their seqs are never reused.

Reading through registers (the protocol is in ``protocols/roles/common.py``):
:meth:`fill` writes the window of ``count`` events starting at the lowest seq
>= ``from_seq`` into register words; events only, no allocation beyond a few
small integers.

The node's wall clock (:class:`Clock`): set by the gateway, kept between writes by counting ticks.

``Clock(ticks_ms)`` counts with the board's millisecond ticks (``time.ticks_ms``
on hardware; the virtual board's ticks run at the virtual street's speed).
:meth:`Clock.update` must run at least every few days (ticks wrap: on the
ESP32 ``ticks_diff`` is exact up to 2**29 ms, about six days); the node calls
it every sample.

- ``epoch()``: Unix seconds UTC, or None while the clock has not been set
  since boot (it does not survive a reset: nothing on the node keeps time
  without power).
- ``synced()``: set since boot, and the last set is at most ``max_age_s``
  old (a crystal drifts about 2 s a day).
- ``uptime_s()``: seconds since boot in the same timebase, for events that
  happen before the clock is set.
- ``ms()``: a monotonic millisecond count since boot (never wraps), for
  timers that must follow the clock's timebase (an override).

Integers only; the second count is split from the milliseconds so that no
value outgrows a small integer on the ESP32 except the epoch itself.

Both live in one module: each module the node imports costs it a module object, a globals
dictionary and a constant table in RAM.
"""

import struct
import time

from firmware.storage import atomic_write, exists

try:
    from binascii import crc32
except ImportError:  # pragma: no cover - every port we target has it
    from zlib import crc32

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_CAPACITY = const(96)
SEQ_BLOCK = const(32)
_FLUSH_MS = const(30000)
RECORD = const(14)
_HEADER = const(">4sHHIII")
_HEADER_SIZE = const(20)
_MAGIC = b"SEL1"
_CLOCK_MIN = 1577836800  # as protocols.roles.common.CLOCK_MIN
_EV_ALARM_ON = const(6)
_EV_ALARM_OFF = const(7)
_S32_MIN = -0x80000000
_S32_MAX = 0x7FFFFFFF


_DEFAULT_MAX_AGE_S = const(604800)  # a week


class Clock:
    """Wall clock and uptime of the node, in the timebase of ``ticks_ms``."""

    def __init__(self, ticks_ms=None):
        self._ticks = ticks_ms or time.ticks_ms
        self._last = self._ticks()
        self._epoch = 0  # whole seconds; 0: not set since boot
        self._frac = 0  # milliseconds beyond _epoch
        self._up_s = 0
        self._up_frac = 0
        self._age_s = -1  # seconds since the last set; -1 never
        self._age_frac = 0
        self.max_age_s = _DEFAULT_MAX_AGE_S
        self.sets = 0

    def update(self):
        """Advance by the ticks elapsed since the last call."""
        now = self._ticks()
        d = time.ticks_diff(now, self._last)
        self._last = now
        if d <= 0:
            return
        f = self._up_frac + d
        self._up_s += f // 1000
        self._up_frac = f % 1000
        if self._epoch:
            f = self._frac + d
            self._epoch += f // 1000
            self._frac = f % 1000
            f = self._age_frac + d
            self._age_s += f // 1000
            self._age_frac = f % 1000

    def set(self, epoch):
        """Set the time (epoch seconds); return the correction in seconds, or None for the first set since boot."""
        self.update()
        old = self._epoch
        self._epoch = epoch
        self._frac = 0
        self._age_s = 0
        self._age_frac = 0
        self.sets += 1
        return epoch - old if old else None

    def epoch(self):
        """Unix seconds UTC, or None if not set since boot."""
        self.update()
        return self._epoch or None

    def synced(self):
        """True if set since boot and the last set is at most ``max_age_s`` old."""
        self.update()
        return self._epoch != 0 and self._age_s <= self.max_age_s

    def age_s(self):
        """Seconds since the last set, or None if not set since boot."""
        self.update()
        return self._age_s if self._age_s >= 0 else None

    def uptime_s(self):
        """Seconds since boot, in the clock's timebase."""
        self.update()
        return self._up_s

    def ms(self):
        """Milliseconds since boot, in the clock's timebase; never wraps."""
        self.update()
        return self._up_s * 1000 + self._up_frac


class EventLog:
    """Events of one node; ``clock`` gives the time (``epoch()`` or None, ``uptime_s()``)."""

    def __init__(self, path="events.bin", clock=None, capacity=_CAPACITY, block=SEQ_BLOCK, flush_ms=_FLUSH_MS):
        self.path = path
        self.clock = clock
        self.capacity = capacity
        self.block = block
        self.flush_ms = flush_ms
        self._buf = bytearray(capacity * RECORD)
        self._mv = memoryview(self._buf)
        self._start = 0  # ring index of the oldest event
        self.count = 0
        self.next_seq = 0
        self.reserved = 0  # seqs below this are covered by the file
        self.lost = 0
        self.acked = 0  # highest event_from a master wrote
        self.error = False
        self.saves = 0
        self.changed = True  # the register window needs refilling
        self._dirty_since = None  # ticks_ms of the first unsaved change
        self.load()
        self.boot_seq = self.next_seq  # first seq of this boot

    # --- persistence ---------------------------------------------------------------------------

    def load(self):
        """Read the log (the file, else its complete temporary copy); an empty log if neither is valid."""
        for path in (self.path, self.path + ".tmp"):
            if self._load(path):
                return
        # First boot, or both copies unreadable: the latter is worth the error flag.
        self.error = exists(self.path)

    def _load(self, path):
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return False
        if len(data) < _HEADER_SIZE + 4:
            return False
        magic, _cap, count, reserved, lost, acked = struct.unpack_from(_HEADER, data, 0)
        end = _HEADER_SIZE + count * RECORD
        if magic != _MAGIC or len(data) != end + 4:
            return False
        if crc32(memoryview(data)[:end]) & 0xFFFFFFFF != struct.unpack_from(">I", data, end)[0]:
            return False
        skip = count - self.capacity if count > self.capacity else 0  # keep the newest
        n = count - skip
        src = _HEADER_SIZE + skip * RECORD
        self._buf[0:n * RECORD] = data[src:end]
        self._start = 0
        self.count = n
        self.reserved = reserved
        self.next_seq = reserved
        self.lost = lost
        self.acked = acked
        return True

    def flush(self):
        """Save the log now (atomically); False (and ``error``) if the write failed."""
        n = self.count
        out = bytearray(_HEADER_SIZE + n * RECORD + 4)
        struct.pack_into(_HEADER, out, 0, _MAGIC, self.capacity, n, self.reserved, self.lost, self.acked)
        first = self.capacity - self._start  # events before the ring wraps
        a = n if n < first else first
        o = _HEADER_SIZE
        out[o:o + a * RECORD] = self._mv[self._start * RECORD:(self._start + a) * RECORD]
        if n > a:
            out[o + a * RECORD:o + n * RECORD] = self._mv[0:(n - a) * RECORD]
        end = _HEADER_SIZE + n * RECORD
        struct.pack_into(">I", out, end, crc32(memoryview(out)[:end]) & 0xFFFFFFFF)
        try:
            atomic_write(self.path, out)
        except OSError:
            self.error = True
            return False
        self.error = False
        self.saves += 1
        self._dirty_since = None
        return True

    def tick(self, now_ms):
        """Save if unsaved events are ``flush_ms`` old; call once per sample."""
        since = self._dirty_since
        if since is not None and time.ticks_diff(now_ms, since) >= self.flush_ms:
            self.flush()

    def _dirty(self):
        if self._dirty_since is None:
            self._dirty_since = time.ticks_ms()

    # --- writing -------------------------------------------------------------------------------

    def log(self, code, value=0):
        """Record event ``code`` with ``value`` (clamped to s32) now; return its seq."""
        clock = self.clock
        t = 0
        if clock is not None:
            t = clock.epoch() or clock.uptime_s()
        return self.add(code, value, t)

    def alarm(self, bit, on):
        """Record that status bit ``bit`` was raised (``on``) or cleared."""
        return self.log(_EV_ALARM_ON if on else _EV_ALARM_OFF, bit)

    def alarms(self, changed, status):
        """Record each bit of ``changed`` as raised or cleared, as ``status`` has it (lowest bit first)."""
        bit = 1
        while bit <= changed:
            if changed & bit:
                self.log(_EV_ALARM_ON if status & bit else _EV_ALARM_OFF, bit)
            bit <<= 1

    def add(self, code, value, t):
        """Record an event with an explicit time; return its seq."""
        seq = self.next_seq
        cap = self.capacity
        if self.count == cap:  # overwrite the oldest
            if _seq_at(self._buf, self._start * RECORD) >= self.acked:
                self.lost += 1
            self._start = (self._start + 1) % cap
            self.count -= 1
        i = (self._start + self.count) % cap
        v = _S32_MIN if value < _S32_MIN else _S32_MAX if value > _S32_MAX else value
        struct.pack_into(">IIHi", self._buf, i * RECORD, seq, t & 0xFFFFFFFF, code & 0xFFFF, v)
        self.count += 1
        self.next_seq = seq + 1
        self.changed = True
        if seq >= self.reserved:
            self.reserved = seq + self.block
            self.flush()
        else:
            self._dirty()
        return seq

    def acknowledge(self, from_seq):
        """A master asked for events from ``from_seq``: those below are in its hands."""
        if from_seq > self.acked:
            self.acked = from_seq
            self._dirty()
        self.changed = True

    def retime(self, offset):
        """The clock was set: add ``offset`` (epoch - uptime) to this boot's event times still in uptime seconds."""
        buf = self._buf
        cap = self.capacity
        for k in range(self.count):
            o = ((self._start + k) % cap) * RECORD
            if _seq_at(buf, o) < self.boot_seq:
                continue
            t = _seq_at(buf, o + 4)
            if t < _CLOCK_MIN:
                struct.pack_into(">I", buf, o + 4, (t + offset) & 0xFFFFFFFF)
                self.changed = True
        if self.changed:
            self._dirty()

    # --- reading -------------------------------------------------------------------------------

    def oldest(self):
        """Seq of the oldest event held (``next_seq`` when empty)."""
        return _seq_at(self._buf, self._start * RECORD) if self.count else self.next_seq

    def fill(self, words, start, from_seq, slots):
        """Write up to ``slots`` events with seq >= ``from_seq`` into ``words[start:]`` (7 words each).

        Unused slots are zeroed. Returns the number of events written.
        """
        buf = self._buf
        cap = self.capacity
        k = 0
        n = self.count
        while k < n and _seq_at(buf, ((self._start + k) % cap) * RECORD) < from_seq:
            k += 1
        shown = 0
        w = start
        for _ in range(slots):
            if k < n:
                o = ((self._start + k) % cap) * RECORD
                for j in range(7):
                    words[w + j] = (buf[o + 2 * j] << 8) | buf[o + 2 * j + 1]
                k += 1
                shown += 1
            else:
                for j in range(7):
                    words[w + j] = 0
            w += 7
        self.changed = False
        return shown


def _seq_at(buf, o):
    return (buf[o] << 24) | (buf[o + 1] << 16) | (buf[o + 2] << 8) | buf[o + 3]
