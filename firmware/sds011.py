"""Nova Fitness SDS011 laser dust sensor on a UART (9600 8N1), after its control protocol (V1.3).

Frames from the sensor are 10 bytes::

    AA C0 pm25_lo pm25_hi pm10_lo pm10_hi id_lo id_hi checksum AB   measurement
    AA C5 cmd d1 d2 d3 id_lo id_hi checksum AB                      command reply

``checksum`` = sum of the six bytes after the command byte, modulo 256. PM
values are in 0.1 ug/m3. Commands to the sensor are 19 bytes::

    AA B4 cmd d2 .. d13 id_lo id_hi checksum AB

with the checksum over the 15 bytes from ``cmd`` to ``id_hi``; id FFFF
addresses any sensor. Commands used here: 2 reporting mode (query mode: the
sensor answers only to command 4), 4 query data, 6 sleep/work.

:class:`Sds011Parser` is sans-IO: it takes bytes as they come, keeps in step
across garbage, and checks the head, command byte, checksum and tail of every
frame. :class:`SDS011` wraps a ``machine.UART``-like port (non-blocking
``read``) and never raises on a sensor failure.
"""

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


if False:  # type checkers only
    import machine

_HEAD = const(0xAA)
_TAIL = const(0xAB)
_CMD_TO_SENSOR = const(0xB4)
_FRAME_DATA = const(0xC0)
_FRAME_REPLY = const(0xC5)
CMD_REPORTING_MODE = const(2)
CMD_QUERY = const(4)
CMD_SLEEP_WORK = const(6)
_ANY_ID = const(0xFFFF)
_FRAME_LEN = const(10)
_COMMAND_LEN = const(19)


def command(cmd, d2=0, d3=0, device_id=_ANY_ID, out=None):
    """The 19-byte command frame ``cmd`` with data bytes ``d2``, ``d3`` (the rest zero), in ``out`` if given."""
    buf = out if out is not None else bytearray(_COMMAND_LEN)
    for i in range(_COMMAND_LEN):
        buf[i] = 0
    buf[0] = _HEAD
    buf[1] = _CMD_TO_SENSOR
    buf[2] = cmd
    buf[3] = d2
    buf[4] = d3
    buf[15] = device_id & 0xFF
    buf[16] = (device_id >> 8) & 0xFF
    s = 0
    for i in range(2, 17):
        s += buf[i]
    buf[17] = s & 0xFF
    buf[18] = _TAIL
    return buf


class Sds011Parser:
    """Finds valid frames in a byte stream; counts what it had to throw away."""

    def __init__(self):
        self._buf = bytearray(_FRAME_LEN)
        self._n = 0
        self.pm25 = None  # last measurement, 0.1 ug/m3
        self.pm10 = None
        self.device_id = None
        self.measurements = 0  # valid data frames
        self.replies = 0  # valid command replies
        self.last_reply = None  # command byte of the last reply
        self.bad_frames = 0  # head and length right, but command, checksum or tail wrong
        self.garbage = 0  # bytes skipped while looking for a head

    def feed(self, data, n=None):
        """Take ``data[:n]``; return the number of valid data frames found in it."""
        found = 0
        end = len(data) if n is None else n
        for i in range(end):
            found += self._byte(data[i])
        return found

    def _byte(self, b):
        buf = self._buf
        n = self._n
        if n == 0 and b != _HEAD:
            self.garbage += 1
            return 0
        buf[n] = b
        n += 1
        if n == 2 and b != _FRAME_DATA and b != _FRAME_REPLY:
            self.bad_frames += 1
            return self._resync(n)
        if n < _FRAME_LEN:
            self._n = n
            return 0
        self._n = 0
        s = 0
        for i in range(2, 8):
            s += buf[i]
        if buf[9] != _TAIL or buf[8] != s & 0xFF:
            self.bad_frames += 1
            return self._resync(_FRAME_LEN)
        self.device_id = buf[6] | (buf[7] << 8)
        if buf[1] == _FRAME_DATA:
            self.pm25 = buf[2] | (buf[3] << 8)
            self.pm10 = buf[4] | (buf[5] << 8)
            self.measurements += 1
            return 1
        self.last_reply = buf[2]
        self.replies += 1
        return 0

    def _resync(self, n):
        # Drop the head that led nowhere; the bytes after it may hold the real head.
        buf = self._buf
        self._n = 0
        rest = bytes(buf[1:n])
        found = 0
        for b in rest:
            found += self._byte(b)
        return found


class SDS011:
    """An SDS011 on ``uart`` in query mode; ``parser`` holds the last values and error counts."""

    def __init__(self, uart: "machine.UART", device_id=_ANY_ID):
        self.uart = uart
        self.device_id = device_id
        self.parser = Sds011Parser()
        self._cmd = bytearray(_COMMAND_LEN)
        self._rx = bytearray(64)
        self.write_errors = 0

    def _send(self, cmd, d2=0, d3=0):
        command(cmd, d2, d3, self.device_id, self._cmd)
        try:
            self.uart.write(self._cmd)
        except OSError:
            self.write_errors += 1
            return False
        return True

    def set_query_mode(self):
        """Ask the sensor to measure only when queried (it reports every second by default)."""
        return self._send(CMD_REPORTING_MODE, 1, 1)

    def query(self):
        """Ask for a measurement; the answer arrives within about a second (see :meth:`poll`)."""
        return self._send(CMD_QUERY)

    def sleep(self):
        """Laser and fan off."""
        return self._send(CMD_SLEEP_WORK, 1, 0)

    def wake(self):
        """Laser and fan on; readings are good after about 30 s of airflow."""
        return self._send(CMD_SLEEP_WORK, 1, 1)

    def poll(self):
        """Read whatever arrived; return the number of new valid measurements."""
        found = 0
        uart = self.uart
        rx = self._rx
        for _ in range(8):  # bounded: a jabbering line cannot hold the loop
            try:
                n = uart.readinto(rx)
            except OSError:
                n = None
            if not n:
                break
            found += self.parser.feed(rx, n)
        return found
