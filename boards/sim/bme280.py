"""A simulated BME280 on a simulated I2C bus: the chip as the driver sees it, register by register.

:class:`SimI2C` has the memory methods of ``machine.I2C`` (``readfrom_mem``,
``readfrom_mem_into``, ``writeto_mem``, ``scan``); an address nobody answers
raises ``OSError(ENODEV)`` as the ESP32 port does.

:class:`SimBME280` holds the chip's register file: chip id 0x60 at 0xD0,
trimming parameters at 0x88..0xA1 and 0xE1..0xE7 (by default the example set
of the Bosch datasheet for temperature and pressure and a typical factory set
for humidity), ``ctrl_hum``/``ctrl_meas``/``config``, ``status`` and the data
registers. Writing forced mode to ``ctrl_meas`` starts a conversion: the
physical temperature, humidity and pressure (from ``source()``) are turned
into raw ADC values by INVERTING the datasheet's double-precision
compensation (section 8.1, an implementation independent of the driver's
integer one) by bisection, quantised as the chip does (16 bits at
oversampling x1, one more bit per doubling), and appear in the data
registers ``_CONVERSION_MS`` later; until then ``status.measuring`` is set.
As on the chip, a ``ctrl_hum`` write takes effect only with the next
``ctrl_meas`` write, and a channel with oversampling 0 reads 0x80000 / 0x8000.

Faults (``fault``): ``"absent"`` (no acknowledge: OSError), ``"bad_id"``
(answers as a BMP280, id 0x58), ``"stuck"`` (never finishes a conversion),
``"skip"`` (data registers read the skipped values).
"""

import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


ENODEV = const(19)
_CONVERSION_MS = const(10)
# dig_T1..T3, dig_P1..P9: the worked example of the Bosch BMP280/BME280 datasheets.
DATASHEET_TP = (27504, 26435, -1000, 36477, -10685, 3024, 2855, 140, -7, 15500, -14600, 6000)
# dig_H1..H6 as read from a production BME280.
TYPICAL_H = (75, 362, 0, 313, 50, 30)


class SimI2C:
    """A bus of simulated devices: ``devices`` maps a 7-bit address to a device with ``read``/``write``."""

    def __init__(self, devices=None):
        self.devices = devices if devices is not None else {}
        self.transactions = 0

    def _device(self, addr):
        self.transactions += 1
        dev = self.devices.get(addr)
        if dev is None or getattr(dev, "fault", None) == "absent":
            raise OSError(ENODEV)
        return dev

    def scan(self):
        """Addresses that acknowledge."""
        return sorted(a for a, d in self.devices.items() if getattr(d, "fault", None) != "absent")

    def readfrom_mem(self, addr, memaddr, nbytes):
        """``nbytes`` from register ``memaddr`` on."""
        return bytes(self._device(addr).read(memaddr, nbytes))

    def readfrom_mem_into(self, addr, memaddr, buf):
        """Fill ``buf`` from register ``memaddr`` on."""
        data = self._device(addr).read(memaddr, len(buf))
        for i in range(len(buf)):
            buf[i] = data[i]

    def writeto_mem(self, addr, memaddr, buf):
        """Write ``buf`` from register ``memaddr`` on."""
        self._device(addr).write(memaddr, buf)


class SimBME280:
    """The chip; ``source()`` returns ``(temperature_c, humidity_percent, pressure_pa)`` when it converts."""

    def __init__(self, source, tp=DATASHEET_TP, h=TYPICAL_H, fault=None):
        self.source = source
        self.fault = fault
        self.regs = bytearray(256)
        self.regs[0xD0] = 0x60
        self._ctrl_hum_pending = 0
        self._ready_at = None
        self.conversions = 0
        self.last_physical = None  # what the last conversion measured
        self.last_raw = None
        self._calibrate(tp, h)

    def _calibrate(self, tp, h):
        t1, t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9 = tp
        self.cal = {"T": (t1, t2, t3), "P": (p1, p2, p3, p4, p5, p6, p7, p8, p9), "H": h}
        r = self.regs
        _put16(r, 0x88, t1)
        for i, v in enumerate((t2, t3, p1, p2, p3, p4, p5, p6, p7, p8, p9)):
            _put16(r, 0x8A + 2 * i, v)
        h1, h2, h3, h4, h5, h6 = h
        r[0xA1] = h1
        _put16(r, 0xE1, h2)
        r[0xE3] = h3
        r[0xE4] = (h4 >> 4) & 0xFF
        r[0xE5] = (h4 & 0x0F) | ((h5 & 0x0F) << 4)
        r[0xE6] = (h5 >> 4) & 0xFF
        r[0xE7] = h6 & 0xFF

    # -- the bus side ------------------------------------------------------

    def read(self, reg, n):
        """Register contents from ``reg`` (auto-increment)."""
        self._finish()
        if self.fault == "bad_id" and reg <= 0xD0 < reg + n:
            out = bytearray(self.regs[reg:reg + n])
            out[0xD0 - reg] = 0x58
            return out
        return self.regs[reg:reg + n]

    def write(self, reg, data):
        """Register writes (each byte to the next register, as on the chip in I2C mode with one byte)."""
        for i in range(len(data)):
            self._write1(reg + i, data[i])

    def _write1(self, reg, value):
        if reg == 0xE0:
            if value == 0xB6:  # soft reset: registers back to defaults, trimming kept
                for a in (0xF2, 0xF3, 0xF4, 0xF5):
                    self.regs[a] = 0
            return
        if reg == 0xF2:
            self._ctrl_hum_pending = value & 0x07
            return
        if reg == 0xF4:
            self.regs[0xF2] = self._ctrl_hum_pending  # ctrl_hum becomes effective now
            self.regs[0xF4] = value
            if value & 0x03 in (1, 2):
                self._convert()
            return
        if reg in (0xF5,):
            self.regs[reg] = value

    # -- the conversion ----------------------------------------------------

    def _convert(self):
        self.conversions += 1
        self.regs[0xF3] |= 0x08  # measuring
        self._ready_at = time.ticks_add(time.ticks_ms(), _CONVERSION_MS)

    def _finish(self):
        if self._ready_at is None or self.fault == "stuck":
            return
        if time.ticks_diff(time.ticks_ms(), self._ready_at) < 0:
            return
        self._ready_at = None
        temp, hum, press = self.source()
        self.last_physical = (temp, hum, press)
        ctrl = self.regs[0xF4]
        osrs_t = ctrl >> 5
        osrs_p = (ctrl >> 2) & 0x07
        osrs_h = self.regs[0xF2] & 0x07
        adc_t, t_fine = self.invert_t(temp)
        adc_p = self.invert_p(press, t_fine)
        adc_h = self.invert_h(hum, t_fine)
        adc_t = _quantise(adc_t, osrs_t, 0x80000)
        adc_p = _quantise(adc_p, osrs_p, 0x80000)
        adc_h = adc_h if osrs_h else 0x8000
        if self.fault == "skip":
            adc_t, adc_p, adc_h = 0x80000, 0x80000, 0x8000
        self.last_raw = (adc_t, adc_p, adc_h)
        r = self.regs
        r[0xF7] = adc_p >> 12
        r[0xF8] = (adc_p >> 4) & 0xFF
        r[0xF9] = (adc_p & 0x0F) << 4
        r[0xFA] = adc_t >> 12
        r[0xFB] = (adc_t >> 4) & 0xFF
        r[0xFC] = (adc_t & 0x0F) << 4
        r[0xFD] = adc_h >> 8
        r[0xFE] = adc_h & 0xFF
        r[0xF3] &= ~0x08 & 0xFF
        if ctrl & 0x03 != 3:
            r[0xF4] = ctrl & 0xFC  # forced mode falls back to sleep

    # -- datasheet section 8.1, double precision, and their inverses --------

    def temperature(self, adc_t):
        """``(degC, t_fine)`` of a raw temperature."""
        t1, t2, t3 = self.cal["T"]
        var1 = (adc_t / 16384.0 - t1 / 1024.0) * t2
        x = adc_t / 131072.0 - t1 / 8192.0
        var2 = x * x * t3
        return (var1 + var2) / 5120.0, int(var1 + var2)

    def pressure(self, adc_p, t_fine):
        """Pa of a raw pressure."""
        p1, p2, p3, p4, p5, p6, p7, p8, p9 = self.cal["P"]
        var1 = t_fine / 2.0 - 64000.0
        var2 = var1 * var1 * p6 / 32768.0
        var2 = var2 + var1 * p5 * 2.0
        var2 = var2 / 4.0 + p4 * 65536.0
        var1 = (p3 * var1 * var1 / 524288.0 + p2 * var1) / 524288.0
        var1 = (1.0 + var1 / 32768.0) * p1
        if var1 == 0.0:
            return 0.0
        p = 1048576.0 - adc_p
        p = (p - var2 / 4096.0) * 6250.0 / var1
        var1 = p9 * p * p / 2147483648.0
        var2 = p * p8 / 32768.0
        return p + (var1 + var2 + p7) / 16.0

    def humidity(self, adc_h, t_fine):
        """%RH of a raw humidity."""
        h1, h2, h3, h4, h5, h6 = self.cal["H"]
        v = t_fine - 76800.0
        v = (adc_h - (h4 * 64.0 + h5 / 16384.0 * v)) * (
            h2 / 65536.0 * (1.0 + h6 / 67108864.0 * v * (1.0 + h3 / 67108864.0 * v))
        )
        v = v * (1.0 - h1 * v / 524288.0)
        return min(100.0, max(0.0, v))

    def invert_t(self, temp):
        """The raw 20-bit value (and its t_fine) whose temperature is closest to ``temp``."""
        adc = _bisect(lambda a: self.temperature(a)[0], temp, 0, 0xFFFFF, True)
        return adc, self.temperature(adc)[1]

    def invert_p(self, press, t_fine):
        """The raw 20-bit value whose pressure is closest to ``press`` (pressure falls as the raw value rises)."""
        return _bisect(lambda a: self.pressure(a, t_fine), press, 0, 0xFFFFF, False)

    def invert_h(self, hum, t_fine):
        """The raw 16-bit value whose humidity is closest to ``hum``."""
        return _bisect(lambda a: self.humidity(a, t_fine), hum, 0, 0xFFFF, True)


def _bisect(f, target, lo, hi, rising):
    # Smallest raw value whose output reaches the target, then the nearer of it and its neighbour.
    a, b = lo, hi
    while a < b:
        m = (a + b) // 2
        v = f(m)
        if (v < target) if rising else (v > target):
            a = m + 1
        else:
            b = m
    if a > lo and abs(f(a - 1) - target) <= abs(f(a) - target):
        return a - 1
    return a


def _quantise(adc, osrs, skipped):
    # Oversampling x1 gives 16 bits, x2 17, ... x16 20 bits (datasheet 3.4.3, filter off).
    if osrs == 0:
        return skipped
    bits = 15 + min(osrs, 5)
    drop = 20 - bits
    return ((adc + (1 << drop >> 1)) >> drop << drop) & 0xFFFFF if drop else adc


def _put16(regs, addr, value):
    value &= 0xFFFF
    regs[addr] = value & 0xFF
    regs[addr + 1] = value >> 8
