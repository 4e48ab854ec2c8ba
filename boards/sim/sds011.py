"""A simulated SDS011 dust sensor behind a simulated UART, byte for byte as the protocol (V1.3) says.

:class:`SimSDS011` offers what the driver uses of ``machine.UART`` with
``timeout=0``: ``write(buf)``, ``readinto(buf)`` / ``read(n)`` (None when
nothing arrived) and ``any()``. Bytes the sensor sends become readable
``REPLY_MS`` after the event that caused them.

Behaviour: at power-up the sensor reports every second (active mode) and
works (laser on). Command frames (19 bytes, checksum checked; a bad one is
ignored as the real sensor does) for reporting mode (2), query (4) and
sleep/work (6) are obeyed and answered (a C5 reply, or a C0 data frame for a
query). Asleep, it answers nothing but a wake command. PM values come from
``source()`` as ``(pm25, pm10)`` in ug/m3 and are sent in 0.1 ug/m3, capped at
999.9 as the sensor's range.

Faults (``fault``): ``"silent"`` (sends nothing), ``"bad_checksum"`` (frames
with a wrong checksum), ``"garbage"`` (random bytes instead of frames),
``"bad_tail"`` (frames whose last byte is not AB).
"""

import time

from .rng import Rng

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


REPLY_MS = const(20)
_REPORT_MS = const(1000)
_DEVICE_ID = const(0x60A1)


class SimSDS011:
    """The sensor on the far end of a UART."""

    def __init__(self, source, fault=None, seed=0):
        self.source = source
        self.fault = fault
        self.query_mode = False
        self.working = True
        self._rx = bytearray()  # bytes from the host, not yet a whole command
        self._out = []  # (ticks when readable, bytes)
        self._next_report = time.ticks_add(time.ticks_ms(), _REPORT_MS)
        self._rng = Rng(seed)
        self.commands = 0
        self.bad_commands = 0
        self.frames_sent = 0

    # -- what the host sees --------------------------------------------------

    def write(self, buf):
        """Bytes from the host."""
        self._rx.extend(buf)
        while len(self._rx) >= 19:
            start = self._rx.find(b"\xaa\xb4")
            if start < 0:
                self._rx = self._rx[-1:] if self._rx[-1:] == b"\xaa" else bytearray()
                return len(buf)
            if len(self._rx) - start < 19:
                self._rx = self._rx[start:]
                break
            frame = bytes(self._rx[start:start + 19])
            self._rx = self._rx[start + 19:]
            self._command(frame)
        return len(buf)

    def any(self):
        """Bytes ready to read."""
        self._tick()
        now = time.ticks_ms()
        return sum(len(d) for t, d in self._out if time.ticks_diff(now, t) >= 0)

    def read(self, n=-1):
        """Up to ``n`` ready bytes (all if -1), or None."""
        buf = bytearray(self.any() if n < 0 else n)
        got = self.readinto(buf)
        return bytes(buf[:got]) if got else None

    def readinto(self, buf):
        """Fill ``buf`` with ready bytes; the count, or None if none were ready."""
        self._tick()
        now = time.ticks_ms()
        n = 0
        while self._out and n < len(buf):
            t, data = self._out[0]
            if time.ticks_diff(now, t) < 0:
                break
            take = min(len(data), len(buf) - n)
            buf[n:n + take] = data[:take]
            n += take
            if take < len(data):
                self._out[0] = (t, data[take:])
            else:
                self._out.pop(0)
        return n or None

    # -- the sensor ----------------------------------------------------------

    def _tick(self):
        now = time.ticks_ms()
        if self.query_mode or not self.working:
            return
        while time.ticks_diff(now, self._next_report) >= 0:
            self._send(self._measurement(), self._next_report)
            self._next_report = time.ticks_add(self._next_report, _REPORT_MS)

    def _command(self, frame):
        s = sum(frame[2:17]) & 0xFF
        if frame[17] != s or frame[18] != 0xAB:
            self.bad_commands += 1
            return
        self.commands += 1
        cmd = frame[2]
        now = time.ticks_ms()
        if not self.working and not (cmd == 6 and frame[3] == 1 and frame[4] == 1):
            return  # asleep: only a wake-up is heard
        if cmd == 4:
            self._send(self._measurement(), now)
        elif cmd == 2:
            if frame[3] == 1:
                self.query_mode = frame[4] == 1
            self._send(self._reply(2, frame[3], 1 if self.query_mode else 0), now)
        elif cmd == 6:
            if frame[3] == 1:
                self.working = frame[4] == 1
                if self.working:
                    self._next_report = time.ticks_add(now, _REPORT_MS)
            self._send(self._reply(6, frame[3], 1 if self.working else 0), now)

    def _measurement(self):
        pm25, pm10 = self.source()
        a = min(9999, max(0, int(pm25 * 10.0 + 0.5)))
        b = min(9999, max(0, int(pm10 * 10.0 + 0.5)))
        return self._frame(0xC0, (a & 0xFF, a >> 8, b & 0xFF, b >> 8))

    def _reply(self, cmd, d1, d2):
        return self._frame(0xC5, (cmd, d1, d2, 0))

    def _frame(self, kind, data):
        f = bytearray(10)
        f[0] = 0xAA
        f[1] = kind
        f[2:6] = bytes(data)
        f[6] = _DEVICE_ID & 0xFF
        f[7] = _DEVICE_ID >> 8
        f[8] = sum(f[2:8]) & 0xFF
        f[9] = 0xAB
        return f

    def _send(self, frame, at):
        fault = self.fault
        if fault == "silent":
            return
        if fault == "bad_checksum":
            frame[8] = (frame[8] + 1) & 0xFF
        elif fault == "bad_tail":
            frame[9] = 0x00
        elif fault == "garbage":
            for i in range(len(frame)):
                frame[i] = self._rng.next32() & 0xFF
        self.frames_sent += 1
        self._out.append((time.ticks_add(at, REPLY_MS), bytes(frame)))
        if len(self._out) > 64:  # the UART's receive buffer overflows: old bytes are lost
            self._out.pop(0)
