"""The ESP32 water-meter node: two reed switches, a Hall tamper sensor, a battery.

Pin map (ESP32-WROOM-32, no PSRAM):

=========  ====  ==========================================================
GPIO       dir   what
=========  ====  ==========================================================
17, 16     UART  RS-485 TX, RX (UART1); GPIO 4: DE/RE of the transceiver
32         in    reed A (to ground, internal pull-up): one closing per turn
33         in    reed B, a quarter turn after A: the direction
27         in    Hall switch (DRV5032-class, open drain, active low): a magnet
34         ADC   battery through a 1:2 divider (lithium thionyl chloride, 3.6 V)
=========  ====  ==========================================================

Pulses are counted by interrupt (see ``esp32_common.PulseInput``) into the
firmware's counter; the volumes go to NVS periodically (see
``firmware/roles/meter.py`` for when and what a power cut can cost).
"""

import machine
from esp32_common import Esp32Board, PulseInput, adc, average_uv
from micropython import const

if False:  # type checkers only
    from esp32_common import PulseCounter

_REED_A = const(32)
_REED_B = const(33)
_HALL = const(27)
_BATTERY = const(34)
_DIVIDER = const(2)


class Board(Esp32Board):
    """One meter-pit node."""

    name = "esp32_meter"
    RS485 = (1, 17, 16, 4)

    def __init__(self) -> None:
        super().__init__()
        self._pulses = PulseInput(_REED_A, _REED_B)
        self.has_direction = self._pulses.has_direction
        self._hall = machine.Pin(_HALL, machine.Pin.IN, machine.Pin.PULL_UP)
        self._battery = adc(_BATTERY)

    def pulse_input(self, counter: "PulseCounter") -> None:
        """Feed reed A's edges (and B's level) to ``counter`` from now on."""
        self._pulses.attach(counter)

    def tamper(self) -> bool:
        """The Hall switch sees a magnet (its open-drain output pulls low)."""
        return self._hall.value() == 0

    def battery_mv(self) -> int:
        """Battery voltage, mV."""
        return average_uv(self._battery, 8) * _DIVIDER // 1000
