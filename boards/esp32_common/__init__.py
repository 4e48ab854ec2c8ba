"""What the ESP32 boards (lamp, meter, environment) share: RS-485, watchdog, NVS, pulse inputs, reset.

A board package (``boards/esp32_<role>/``) subclasses :class:`Esp32Board`
with its pin map and adds its role's hardware; the image puts this package
next to it as ``esp32_common``. Everything here is the ESP32 port's own API
(``machine``, ``esp32``), checked against ``micropython-esp32-stubs`` by
``tests/boards/test_static_esp32.py``; it cannot run on the unix port.

RS-485: a half-duplex transceiver (MAX3485-class) on a UART, its DE (and
inverted RE) on a GPIO. Mainline MicroPython has no RS-485 mode, so
:meth:`RS485Port.send` raises DE, writes, waits in ``UART.flush()`` (on the
ESP32 it returns when the last stop bit has left the shift register), and
lowers DE. The line is 8 data bits, no parity, 1 stop bit, as the gateway's
bus configuration (``parity = "N"``) expects.

NVS: ``persist_read``/``persist_write`` keep small records as blobs in the
``streetedge`` namespace of the wear-levelled NVS partition; a blob is
written whole or not at all, ``commit()`` after each. The firmware writes
them periodically (the meter: see ``firmware/roles/meter.py``), never per
pulse.

Pulse inputs (:class:`PulseInput`): reed switches to ground with the pin's
pull-up. ``Pin.irq`` on both edges with the default ``hard=False``: the
handler runs as a scheduled callback (the ``micropython.schedule`` mechanism,
between two bytecodes, never inside another Python handler), reads the levels
and the time (``time.ticks_ms``) and hands them to
the counter the firmware attaches (``firmware.pulses.PulseCounter.edge``), which only
does integer arithmetic; boards import only ``protocols``, so the counter arrives as
an argument.
"""

import asyncio
import time

import esp32
import machine
from micropython import const

from protocols.roles.common import BOOT_COMMAND, BOOT_OTHER, BOOT_POWER_ON, BOOT_WATCHDOG

if False:  # type checkers only: what the board needs of the firmware's pulse counter, not an import of it
    from typing import Protocol

    import bluetooth  # the radio's type; imported when a role asks for it (ble())

    class PulseCounter(Protocol):
        def start(self, now_ms: object, a: int) -> None: ...
        def edge(self, now_ms: object, a: int, b: int) -> None: ...

NVS_NAMESPACE = "streetedge"
_NVS_MAX = const(256)  # bytes of the largest record
_RX_BUFFER = const(512)


class RS485Port:
    """A UART and a direction pin: ``stream`` (asyncio) to read, ``send(buf, n)`` to answer."""

    def __init__(self, uart_id: int, tx: int, rx: int, de: int, baud: int) -> None:
        self._de = machine.Pin(de, machine.Pin.OUT, value=0)  # receive until we answer
        self._uart = machine.UART(
            uart_id, baudrate=baud, bits=8, parity=None, stop=1, tx=tx, rx=rx, timeout=0, rxbuf=_RX_BUFFER
        )
        self.stream = asyncio.StreamReader(self._uart)
        self.silence_us = 0  # the slave times t3.5 from the baud rate

    async def send(self, buf: bytearray, n: int) -> None:
        """Transmit ``buf[0:n]``: DE high, write, wait for the last stop bit, DE low."""
        de = self._de
        uart = self._uart
        de.value(1)
        try:
            uart.write(memoryview(buf)[:n])
            uart.flush()
        finally:
            de.value(0)


class NvsStore:
    """Small records in NVS, by key (at most 15 characters)."""

    def __init__(self, namespace: str = NVS_NAMESPACE) -> None:
        self._nvs = esp32.NVS(namespace)
        self._buf = bytearray(_NVS_MAX)

    def read(self, key: str) -> "bytes | None":
        """The record stored under ``key``, or None (never written, or unreadable)."""
        try:
            n = self._nvs.get_blob(key, self._buf)
        except OSError:  # ESP_ERR_NVS_NOT_FOUND, or larger than the buffer
            return None
        return bytes(self._buf[:n])

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` and commit (OSError if NVS is full or broken)."""
        self._nvs.set_blob(key, data)
        self._nvs.commit()


class PulseInput:
    """Reed switch A (and B, a quarter turn later) on pulled-up pins, feeding a pulse counter."""

    def __init__(self, pin_a: int, pin_b: "int | None" = None) -> None:
        self._a = machine.Pin(pin_a, machine.Pin.IN, machine.Pin.PULL_UP)
        self._b = machine.Pin(pin_b, machine.Pin.IN, machine.Pin.PULL_UP) if pin_b is not None else None
        self._counter: "PulseCounter | None" = None
        self.has_direction = pin_b is not None

    def attach(self, counter: "PulseCounter") -> None:
        """Count A's edges into ``counter`` from now on."""
        self._counter = counter
        counter.start(time.ticks_ms(), self._a.value())
        self._a.irq(handler=self._edge, trigger=machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING)

    def _edge(self, pin: machine.Pin) -> None:
        # A scheduled callback (hard=False): integer work only, no allocation, no I/O.
        counter = self._counter
        if counter is not None:
            b = self._b
            counter.edge(time.ticks_ms(), pin.value(), b.value() if b is not None else 1)


class Esp32Board:
    """The parts every streetedge ESP32 board has; a subclass sets ``RS485`` = (uart, tx, rx, de)."""

    name = "esp32"
    flash_dir = ""  # the LittleFS root: the node's files are /config.json, /counters.json ...
    RS485 = (1, 17, 16, 4)

    def __init__(self) -> None:
        self._nvs: "NvsStore | None" = None

    def open_rs485(self, baud: int) -> RS485Port:
        """The RS-485 port at ``baud`` (8N1)."""
        uart_id, tx, rx, de = self.RS485
        return RS485Port(uart_id, tx, rx, de, baud)

    def watchdog(self, timeout_ms: int) -> machine.WDT:
        """Start the hardware watchdog; it cannot be stopped, only fed."""
        return machine.WDT(timeout=timeout_ms)

    def tasks(self) -> tuple:
        """Coroutines the board needs running: none, its inputs are interrupts."""
        return ()

    def ble(self) -> "bluetooth.BLE":
        """The chip's radio, MicroPython's ``bluetooth.BLE`` (the meter and environment roles advertise on it)."""
        import bluetooth

        return bluetooth.BLE()

    def ble_tx_power(self, ble: "bluetooth.BLE", dbm: int) -> bool:
        """TX power cannot be set here: MicroPython's ``bluetooth`` has no call for it (ESP-IDF's
        ``esp_ble_tx_power_set`` is not exposed), so the controller keeps its default level. False."""
        return False

    async def ble_sleep(self, ms: int) -> None:
        """Light sleep for ``ms`` between adverts (``machine.lightsleep``): the CPU, the asyncio loop and the
        UART stop meanwhile (a battery node has no RS-485 to serve); the BLE controller's advertising through
        light sleep is not verified on a chip."""
        machine.lightsleep(ms)

    def ble_uuid(self, text: str) -> "bluetooth.UUID":
        """A GATT UUID for ``gatts_register_services`` (MicroPython's ``bluetooth.UUID``)."""
        import bluetooth

        return bluetooth.UUID(text)

    def reset(self) -> None:
        """After a fatal error: reboot the chip."""
        machine.reset()

    def reset_cause(self) -> int:
        """Why the chip last reset, as ``protocols.roles.common.BOOT_*``."""
        cause = machine.reset_cause()
        if cause == machine.PWRON_RESET:
            return BOOT_POWER_ON
        if cause == machine.WDT_RESET:
            return BOOT_WATCHDOG
        if cause == machine.SOFT_RESET:
            return BOOT_COMMAND
        return BOOT_OTHER

    def _store(self) -> NvsStore:
        if self._nvs is None:
            self._nvs = NvsStore()
        return self._nvs

    def persist_read(self, key: str) -> "bytes | None":
        """The record stored under ``key`` in NVS, or None."""
        return self._store().read(key)

    def persist_write(self, key: str, data: bytes) -> None:
        """Store ``data`` under ``key`` in NVS, whole or not at all."""
        self._store().write(key, data)


def average_uv(adc: machine.ADC, samples: int = 16) -> int:
    """Mean of ``samples`` calibrated ADC readings, microvolts (the ESP32 ADC is noisy)."""
    total = 0
    for _ in range(samples):
        total += adc.read_uv()
    return total // samples


def adc(pin: int) -> machine.ADC:
    """An ADC input on ``pin`` with the 11 dB attenuator (0..~3.1 V)."""
    return machine.ADC(machine.Pin(pin), atten=machine.ADC.ATTN_11DB)
