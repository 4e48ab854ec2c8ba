"""The ESP32 lamp-post controller: latching relay, 0-10 V dimming, BL0937 metering, NTC, photocell.

Pin map (ESP32-WROOM-32, no PSRAM):

=========  ====  ==========================================================
GPIO       dir   what
=========  ====  ==========================================================
17, 16     UART  RS-485 TX, RX (UART1); GPIO 4: DE/RE of the transceiver
25, 26     out   latching relay SET and RESET coils (through drivers), 30 ms pulses
27         PWM   0-10 V dimming: 1 kHz PWM, RC filter, x3.3 op-amp stage
32         in    BL0937 CF: pulses at a frequency proportional to active power
33         in    BL0937 CF1: current or voltage pulses, selected by SEL
14         out   BL0937 SEL: 0 current, 1 voltage
34         ADC   driver NTC (10 k, B 3950) under a 10 k pull-up to 3.3 V
35         ADC   photocell (LDR) under a 10 k pull-up
=========  ====  ==========================================================

The relay is bistable: a reset or a brown-out of the ESP32 leaves the
contact where it was (the pins float, no coil is pulsed), and the firmware
sets it again when it starts. Metering: the BL0937 gives pulse frequencies;
:meth:`Board.read_meter` turns the pulses counted since the last call into
watts, volts and amps with the constants below, which are the datasheet's
reference-design values and must be calibrated on a bench (a known load and
a reference meter) before the figures mean anything.
"""

import math
import time

import machine
from esp32_common import Esp32Board, adc, average_uv
from micropython import const

_RELAY_SET = const(25)
_RELAY_RESET = const(26)
_COIL_MS = const(30)
_DIM = const(27)
_PWM_HZ = const(1000)
_CF = const(32)
_CF1 = const(33)
_SEL = const(14)
_NTC = const(34)
_LDR = const(35)
# BL0937 reference design (1 mOhm shunt, 1:1000 divider ... see its datasheet): units per Hz.
W_PER_HZ = 1.218
V_PER_HZ = 0.1575
A_PER_HZ = 0.01183
NTC_BETA = 3950.0
NTC_R25 = 10000.0
PULL_UP_OHM = 10000.0
SUPPLY_UV = 3300000


class _PulseRate:
    """Pulses on a pin counted by interrupt; ``hz()`` is their rate since the previous call."""

    def __init__(self, pin: int) -> None:
        self.count = 0
        self._seen = 0
        self._since = time.ticks_ms()
        self._pin = machine.Pin(pin, machine.Pin.IN)
        self._pin.irq(handler=self._pulse, trigger=machine.Pin.IRQ_RISING)

    def _pulse(self, pin: machine.Pin) -> None:
        self.count += 1  # a scheduled callback that only counts

    def hz(self) -> float:
        """Pulses per second since the last call."""
        now = time.ticks_ms()
        n = self.count
        dt = time.ticks_diff(now, self._since)
        pulses = n - self._seen
        self._seen = n
        self._since = now
        return pulses * 1000.0 / dt if dt > 0 else 0.0


class Board(Esp32Board):
    """One lamp controller."""

    name = "esp32_lamp"
    RS485 = (1, 17, 16, 4)

    def __init__(self) -> None:
        super().__init__()
        self._set = machine.Pin(_RELAY_SET, machine.Pin.OUT, value=0)
        self._reset = machine.Pin(_RELAY_RESET, machine.Pin.OUT, value=0)
        self._pwm = machine.PWM(machine.Pin(_DIM), freq=_PWM_HZ, duty_u16=0)
        self._cf = _PulseRate(_CF)
        self._cf1 = _PulseRate(_CF1)
        self._sel = machine.Pin(_SEL, machine.Pin.OUT, value=0)
        self._volts = 0.0
        self._amps = 0.0
        self._ntc = adc(_NTC)
        self._ldr = adc(_LDR)

    def relay(self, on: bool) -> None:
        """Close (True) or open (False) the lamp's supply: one pulse on the SET or RESET coil."""
        coil = self._set if on else self._reset
        coil.value(1)
        time.sleep_ms(_COIL_MS)
        coil.value(0)

    def dimmer(self, percent: int) -> None:
        """Set the 0-10 V output to ``percent`` of 10 V."""
        percent = min(100, max(0, percent))
        self._pwm.duty_u16(percent * 65535 // 100)

    def read_meter(self) -> "tuple[float, float, float]":
        """``(voltage_V, current_A, power_W)``: power every call, voltage and current on alternate calls."""
        power = self._cf.hz() * W_PER_HZ
        f1 = self._cf1.hz()
        if self._sel.value():
            self._volts = f1 * V_PER_HZ
        else:
            self._amps = f1 * A_PER_HZ
        self._sel.value(0 if self._sel.value() else 1)  # measure the other one next time
        return self._volts, self._amps, power

    def read_temperature(self) -> float:
        """Driver temperature, degrees Celsius, from the NTC (beta equation)."""
        uv = average_uv(self._ntc)
        if uv <= 0 or uv >= SUPPLY_UV:
            return -273.15  # open or shorted sensor: reads as absurd, the role clamps it
        r = PULL_UP_OHM * uv / (SUPPLY_UV - uv)
        return 1.0 / (1.0 / 298.15 + math.log(r / NTC_R25) / NTC_BETA) - 273.15

    def read_lux(self) -> float:
        """Illuminance at the photocell, lux (a typical LDR: R = 500 k / lux^0.7; to be calibrated)."""
        uv = average_uv(self._ldr)
        if uv <= 0:
            return 100000.0
        if uv >= SUPPLY_UV:
            return 0.0
        r = PULL_UP_OHM * uv / (SUPPLY_UV - uv)
        return (500000.0 / r) ** (1.0 / 0.7)
