"""Bosch BME280 (temperature, humidity, pressure) on I2C, after the datasheet (BST-BME280-DS002).

Talks to anything with ``machine.I2C``'s memory methods (``readfrom_mem_into``,
``writeto_mem``); an absent or dead chip raises ``OSError`` there
(``ENODEV``/``ETIMEDOUT`` on the ESP32), which this driver turns into a fault
code and ``False``: it never raises.

Use, without blocking the event loop: :meth:`BME280.begin` once (chip id
0x60, trimming parameters 0x88..0xA1 and 0xE1..0xE7, oversampling x1, filter
off), then per measurement :meth:`start` (a forced-mode conversion, about 8 ms
at x1) and later :meth:`ready` (status register 0xF3: ``measuring`` and
``im_update`` clear) and :meth:`read` (burst read 0xF7..0xFE, compensation).

Compensation: the datasheet's integer formulas (section 4.2.3), temperature
in 0.01 degC (32-bit), pressure in Pa as Q24.8 (64-bit), humidity in %RH as
Q22.10 (32-bit). Python integers do not overflow; the formulas are written so
that C's do not either, and C's right shifts of negative values are
arithmetic like Python's, so the results are the same bit for bit. The one
division is done truncating toward zero as C does.
"""

import struct

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


if False:  # type checkers only
    import machine

ADDRESS = const(0x76)  # SDO to ground; 0x77 with SDO high
_CHIP_ID = const(0x60)
_REG_CALIB_A = const(0x88)  # 26 bytes: T1..T3, P1..P9, (0xA0), H1 at 0xA1
_REG_CHIP_ID = const(0xD0)
_REG_RESET = const(0xE0)
_REG_CALIB_B = const(0xE1)  # 7 bytes: H2..H6
_REG_CTRL_HUM = const(0xF2)
_REG_STATUS = const(0xF3)
_REG_CTRL_MEAS = const(0xF4)
_REG_CONFIG = const(0xF5)
_REG_DATA = const(0xF7)  # 8 bytes: press msb, lsb, xlsb, temp msb, lsb, xlsb, hum msb, lsb
_RESET_WORD = const(0xB6)
_STATUS_MEASURING = const(0x08)
_STATUS_IM_UPDATE = const(0x01)
_MODE_FORCED = const(0x01)
_OSRS_X1 = const(1)
_SKIPPED_20 = const(0x80000)  # what a 20-bit channel reads when it was not measured
_SKIPPED_16 = const(0x8000)

FAULT_NONE = const(0)
FAULT_NO_ANSWER = const(1)  # the bus raised OSError: nothing acknowledged
FAULT_CHIP_ID = const(2)  # something answered that is not a BME280
FAULT_NOT_READY = const(3)  # the conversion did not finish
FAULT_DATA = const(4)  # a channel read its "skipped" value
FAULT_NAMES = ("none", "no_answer", "chip_id", "not_ready", "data")


class BME280:
    """One BME280 at ``address`` on ``i2c``; ``fault`` says why the last call failed."""

    def __init__(self, i2c: "machine.I2C", address=ADDRESS):
        self.i2c = i2c
        self.address = address
        self.fault = FAULT_NONE
        self.errors = 0
        self.calibrated = False
        self.chip_id = None
        self._a = bytearray(26)
        self._b = bytearray(7)
        self._data = bytearray(8)
        self._one = bytearray(1)
        self.t_fine = 0
        # The trimming parameters dig_T1..T3, dig_P1..P9, dig_H1..H6 in that order, filled by begin(): one
        # tuple, not 18 attributes (a node would hold 18 more names and a larger attribute table).
        self.trim = (0,) * 18

    def _fail(self, fault):
        self.fault = fault
        self.errors += 1
        return False

    def _read_into(self, reg, buf):
        self.i2c.readfrom_mem_into(self.address, reg, buf)

    def _write(self, reg, value):
        self._one[0] = value
        self.i2c.writeto_mem(self.address, reg, self._one)

    def begin(self):
        """Check the chip, read its trimming parameters, set oversampling x1 and sleep mode; True if ready."""
        self.calibrated = False
        try:
            self._read_into(_REG_CHIP_ID, self._one)
            self.chip_id = self._one[0]
            if self.chip_id != _CHIP_ID:
                return self._fail(FAULT_CHIP_ID)
            self._read_into(_REG_CALIB_A, self._a)
            self._read_into(_REG_CALIB_B, self._b)
            # ctrl_hum takes effect only with the next write of ctrl_meas (datasheet 5.4.3).
            self._write(_REG_CTRL_HUM, _OSRS_X1)
            self._write(_REG_CONFIG, 0)
            self._write(_REG_CTRL_MEAS, (_OSRS_X1 << 5) | (_OSRS_X1 << 2))  # sleep mode
        except OSError:
            return self._fail(FAULT_NO_ANSWER)
        self._unpack()
        self.calibrated = True
        self.fault = FAULT_NONE
        return True

    def _unpack(self):
        # dig_T1..T3, dig_P1..P9 (little-endian, T1 and P1 unsigned), a pad byte, dig_H1 from 0x88..0xA1; then
        # dig_H2, dig_H3 and the bytes 0xE4..0xE7 from 0xE1: H4 and H5 are 12-bit values sharing 0xE5, their
        # high bytes signed (Bosch API).
        h2, h3, h4_hi, shared, h5_hi, h6 = struct.unpack("<hBbBbb", self._b)
        self.trim = struct.unpack("<HhhHhhhhhhhhxB", self._a) + (
            h2, h3, (h4_hi << 4) | (shared & 0x0F), (h5_hi << 4) | (shared >> 4), h6)

    def start(self):
        """Start one forced-mode conversion; True if the chip took the command."""
        if not self.calibrated and not self.begin():
            return False
        try:
            self._write(_REG_CTRL_HUM, _OSRS_X1)
            self._write(_REG_CTRL_MEAS, (_OSRS_X1 << 5) | (_OSRS_X1 << 2) | _MODE_FORCED)
        except OSError:
            self.calibrated = False  # it may have been replaced or reset: check it again
            return self._fail(FAULT_NO_ANSWER)
        return True

    def ready(self):
        """True once the conversion finished (status: not measuring, not copying NVM)."""
        try:
            self._read_into(_REG_STATUS, self._one)
        except OSError:
            self.calibrated = False
            return self._fail(FAULT_NO_ANSWER)
        return not self._one[0] & (_STATUS_MEASURING | _STATUS_IM_UPDATE)

    def read(self):
        """``(temperature 0.01 degC, pressure Pa Q24.8, humidity %RH Q22.10)`` of the last conversion, or None."""
        d = self._data
        try:
            self._read_into(_REG_DATA, d)
        except OSError:
            self.calibrated = False
            self._fail(FAULT_NO_ANSWER)
            return None
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        if adc_t == _SKIPPED_20 or adc_p == _SKIPPED_20 or adc_h == _SKIPPED_16:
            self._fail(FAULT_DATA)
            return None
        t = self.compensate_t(adc_t)
        p = self.compensate_p(adc_p)
        h = self.compensate_h(adc_h)
        self.fault = FAULT_NONE
        return t, p, h

    def not_ready(self):
        """The caller gave up waiting for a conversion: count it as a fault."""
        self._fail(FAULT_NOT_READY)

    # -- datasheet section 4.2.3 --------------------------------------------

    def compensate_t(self, adc_t):
        """Temperature in 0.01 degC from the raw 20-bit value; sets ``t_fine`` for P and H."""
        trim = self.trim
        t1 = trim[0]
        var1 = (((adc_t >> 3) - (t1 << 1)) * trim[1]) >> 11
        x = (adc_t >> 4) - t1
        var2 = (((x * x) >> 12) * trim[2]) >> 14
        self.t_fine = var1 + var2
        return (self.t_fine * 5 + 128) >> 8

    def compensate_p(self, adc_p):
        """Pressure in Pa as Q24.8 (value / 256 = Pa) from the raw 20-bit value (64-bit formula)."""
        trim = self.trim  # dig_P1 at 3
        var1 = self.t_fine - 128000
        var2 = var1 * var1 * trim[8]
        var2 = var2 + ((var1 * trim[7]) << 17)
        var2 = var2 + (trim[6] << 35)
        var1 = ((var1 * var1 * trim[5]) >> 8) + ((var1 * trim[4]) << 12)
        var1 = (((1 << 47) + var1) * trim[3]) >> 33
        if var1 == 0:
            return 0  # the datasheet's guard against a division by zero
        p = 1048576 - adc_p
        p = _div_trunc(((p << 31) - var2) * 3125, var1)
        var1 = (trim[11] * (p >> 13) * (p >> 13)) >> 25
        var2 = (trim[10] * p) >> 19
        return ((p + var1 + var2) >> 8) + (trim[9] << 4)

    def compensate_h(self, adc_h):
        """Relative humidity in %RH as Q22.10 (value / 1024 = %RH) from the raw 16-bit value."""
        h1, h2, h3, h4, h5, h6 = self.trim[12:]
        v = self.t_fine - 76800
        v = (
            ((((adc_h << 14) - (h4 << 20) - (h5 * v)) + 16384) >> 15)
            * (((((((v * h6) >> 10) * (((v * h3) >> 11) + 32768)) >> 10) + 2097152) * h2 + 8192) >> 14)
        )
        v = v - (((((v >> 15) * (v >> 15)) >> 7) * h1) >> 4)
        v = max(v, 0)
        v = min(v, 419430400)
        return v >> 12


def _div_trunc(a, b):
    """Integer division rounding toward zero, as C's ``/``."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q
