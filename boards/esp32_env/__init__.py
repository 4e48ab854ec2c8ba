"""The ESP32 environment node: BME280 on I2C, SDS011 on a UART, a sound-level module on an ADC.

Pin map (ESP32-WROOM-32, no PSRAM):

=========  ====  ==========================================================
GPIO       dir   what
=========  ====  ==========================================================
17, 16     UART  RS-485 TX, RX (UART1); GPIO 4: DE/RE of the transceiver
22, 21     I2C   BME280 SCL, SDA (I2C0, 100 kHz, 4.7 k pull-ups), SDO low: 0x76
26, 25     UART  SDS011 RX, TX (UART2, 9600 8N1; the sensor runs on 5 V, 3.3 V logic)
35         ADC   sound-level module (DFRobot SEN0232-class: 0.6..2.6 V for 30..130 dB(A))
=========  ====  ==========================================================

The buses are built on first use, once; reads are non-blocking (UART
``timeout=0``) so the drivers never hold the event loop.
"""

import machine
from esp32_common import Esp32Board, adc, average_uv
from micropython import const

_SCL = const(22)
_SDA = const(21)
_I2C_HZ = const(100000)
_DUST_TX = const(25)
_DUST_RX = const(26)
_DUST_UART = const(2)
_SOUND = const(35)


class Board(Esp32Board):
    """One environment node."""

    name = "esp32_env"
    RS485 = (1, 17, 16, 4)

    def __init__(self) -> None:
        super().__init__()
        self._i2c: "machine.I2C | None" = None
        self._uart: "machine.UART | None" = None
        self._sound = adc(_SOUND)

    def i2c(self) -> machine.I2C:
        """The sensor I2C bus."""
        if self._i2c is None:
            self._i2c = machine.I2C(0, scl=machine.Pin(_SCL), sda=machine.Pin(_SDA), freq=_I2C_HZ)
        return self._i2c

    def sensor_uart(self) -> machine.UART:
        """The dust sensor's UART, 9600 8N1, reads never wait."""
        if self._uart is None:
            self._uart = machine.UART(_DUST_UART, baudrate=9600, bits=8, parity=None, stop=1,
                                      tx=_DUST_TX, rx=_DUST_RX, timeout=0, rxbuf=256)
        return self._uart

    def sound_uv(self) -> int:
        """The sound-level module's output, microvolts, averaged over 16 readings."""
        return average_uv(self._sound, 16)
