"""The virtual board: the firmware's hardware layer on the MicroPython unix port.

The virtual street starts each node with its flash folder as the working
directory. ``./sim.json`` wires the virtual hardware:
``{"uart": "/dev/pts/N", "baud": 19200, "seed": 1}`` and optionally
``"ambient_c"`` (air around the driver) and ``"fault": "driver"`` (a dead LED
driver, for failure tests).

What the firmware gets (the same surface as ``boards/esp32_lamp``):

- ``open_rs485(baud)``: the RS-485 port, see :class:`SimPort`;
- ``relay(on)``, ``dimmer(percent)``: the lamp's outputs;
- ``read_meter()`` -> ``(voltage_V, current_A, power_W)``, ``read_temperature()``;
- ``watchdog(timeout_ms)`` -> an object with ``feed()``;
- ``flash_dir``: where the node keeps its files;
- ``tasks()``: coroutines the board needs running (here: the physics and the
  ``./world.json`` snapshot every second);
- ``reset()``: what to do after a fatal error.
- the water meter's parts (``pulse_input(counter)``, ``has_direction``,
  ``tamper()``, ``battery_mv()``) and the environment node's (``i2c()``,
  ``sensor_uart()``, ``sound_uv()``): see :mod:`boards.sim.meter_parts` and
  :mod:`boards.sim.env_parts`, built the first time the firmware asks, their
  state in ``world.json`` under ``"water"`` / ``"weather"``;
- ``persist_read(key)``, ``persist_write(key, data)``: the key-value flash
  (NVS on the ESP32; files ``nvs-<key>.bin`` here; ``sim.json``
  ``"flash": "readonly"`` makes writes fail).

``./world.json`` is the physical truth, for tests: ``{"light": 0..1,
"power_w", "relay", "level", "temperature_c", "energy_wh", "ts"}``,
written atomically (temporary file, then rename). A restarted node continues
the previous world's energy and temperature: the lamp outlives its controller.
"""

import asyncio
import json
import os
import sys
import termios
import time

from .lamp_physics import LampPhysics

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_WORLD_PERIOD_MS = const(1000)
_VMIN = const(6)  # Linux indices into the termios cc list
_VTIME = const(5)
_MIN_SILENCE_US = const(10000)


class SimPort:
    """One end of a pseudo-terminal on the virtual bus, standing in for a UART + transceiver.

    ``stream`` is an ``asyncio.StreamReader``: ``await stream.readinto(buf)``
    returns as soon as some bytes arrived (0 only when the bus has hung up);
    ``await send(buf, n)`` transmits ``buf[0:n]``. On the real board ``send``
    raises DE, writes, waits for the last stop bit, lowers DE; on a pty there is
    no direction to switch.

    ``silence_us``: how long the line must be idle before the Modbus slave
    takes it as a frame boundary. A UART times this in hardware to the bit; a
    pty on a shared host delivers bytes with millisecond scheduling jitter (the
    bus process, the node process), which at 19200 baud exceeds t3.5 (2 ms) and
    would cut frames in two. So the virtual board waits at least 10 ms; a
    boundary missed that way only costs the framer a CRC hunt.
    """

    def __init__(self, path, baud):
        self.baud = baud
        t35 = 1750 if baud > 19200 else (38500000 + baud - 1) // baud
        self.silence_us = max(t35, _MIN_SILENCE_US)
        self._f = open(path, "r+b")
        fd = self._f.fileno()
        termios.setraw(fd)
        attrs = termios.tcgetattr(fd)
        # Non-blocking reads (VMIN = VTIME = 0): a blocking read would stall asyncio.
        attrs[6][_VMIN] = 0
        attrs[6][_VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self.stream = asyncio.StreamReader(self._f)
        self._drain()

    def _drain(self):
        # Bytes the bus queued while this node was down are not for the node
        # that boots now; a real UART starts with an empty FIFO.
        buf = bytearray(256)
        for _ in range(64):
            if not self._f.readinto(buf):
                break

    async def send(self, buf, n):
        """Transmit ``buf[0:n]``."""
        mv = memoryview(buf)
        done = 0
        while done < n:
            w = self._f.write(mv[done:n])
            if w:
                done += w
            else:
                await asyncio.sleep_ms(1)

    def close(self):
        """Release the pty."""
        self._f.close()


class SimWatchdog:
    """Stands in for ``machine.WDT``: counts feeds, never resets.

    The unix port has no timer interrupt to bite from while the event loop is
    stuck; the virtual street notices a dead node by its silence instead.
    """

    def __init__(self, timeout_ms):
        self.timeout_ms = timeout_ms
        self.feeds = 0

    def feed(self):
        """Tell the watchdog the node is alive."""
        self.feeds += 1


class Board:
    """The virtual lamp-post controller: pty UART, relay, dimmer, meter, thermometer."""

    name = "sim"

    def __init__(self, wiring="sim.json"):
        self.flash_dir = os.getcwd()
        cfg = _load_json(wiring) or {}
        self._uart = cfg.get("uart")
        self.baud = cfg.get("baud", 19200)
        prev = _load_json("world.json") or {}
        self.lamp = LampPhysics(
            seed=cfg.get("seed", 0),
            ambient_c=cfg.get("ambient_c", 20.0),
            temperature_c=prev.get("temperature_c"),
            energy_wh=prev.get("energy_wh", 0.0),
        )
        self.lamp.failed = cfg.get("fault") == "driver"
        self._last_ms = time.ticks_ms()

    def _advance(self):
        now = time.ticks_ms()
        self.lamp.step(time.ticks_diff(now, self._last_ms) / 1000.0)
        self._last_ms = now

    def open_rs485(self, baud):
        """The RS-485 port at ``baud`` (on the pty the rate only matters to the bus's pacing)."""
        if not self._uart:
            raise OSError("sim.json names no uart")
        return SimPort(self._uart, baud)

    def relay(self, on):
        """Close (True) or open (False) the lamp's supply relay."""
        self._advance()
        self.lamp.set_relay(on)

    def dimmer(self, percent):
        """Set the driver's dim level, 0..100 %."""
        self._advance()
        self.lamp.set_level(percent)

    def read_meter(self):
        """``(voltage_V, current_A, power_W)`` from the metering chip."""
        self._advance()
        return self.lamp.measure()

    def read_temperature(self):
        """Driver temperature in degrees Celsius."""
        self._advance()
        return self.lamp.thermometer()

    def watchdog(self, timeout_ms):
        """Start the watchdog (see :class:`SimWatchdog`)."""
        return SimWatchdog(timeout_ms)

    # -- the water meter's and the environment node's parts (meter_parts.py, env_parts.py), built on first use

    def _parts(self):
        return tuple(p for p in (getattr(self, "_meter_part", None), getattr(self, "_env_part", None)) if p)

    def _meter(self):
        part = getattr(self, "_meter_part", None)
        if part is None:
            from .meter_parts import MeterParts

            prev = (_load_json("world.json") or {}).get("water")
            part = self._meter_part = MeterParts(_load_json("sim.json") or {}, prev)
        return part

    def _env(self):
        part = getattr(self, "_env_part", None)
        if part is None:
            from .env_parts import EnvParts

            part = self._env_part = EnvParts(_load_json("sim.json") or {})
        return part

    def _flash(self):
        store = getattr(self, "_flash_store", None)
        if store is None:
            from .flash import FlashStore

            store = self._flash_store = FlashStore(self.flash_dir)
            store.readonly = (_load_json("sim.json") or {}).get("flash") == "readonly"
        return store

    def persist_read(self, key):
        """The record stored under ``key`` in the key-value flash, or None."""
        return self._flash().read(key)

    def persist_write(self, key, data):
        """Store ``data`` under ``key``, whole or not at all (OSError if the flash fails)."""
        store = self._flash()
        if store.readonly:
            raise OSError(30)  # EROFS
        store.write(key, data)

    @property
    def has_direction(self):
        """The meter has reed B, a quarter turn after A: the direction (backflow) is seen."""
        return self._meter().channels >= 2

    def pulse_input(self, counter):
        """Feed the meter's reed edges to ``counter`` (``firmware.pulses.PulseCounter``) from now on."""
        self._meter().attach(counter)

    def tamper(self):
        """The Hall sensor sees a strong magnet."""
        return self._meter().tamper()

    def battery_mv(self):
        """Battery voltage, mV."""
        return self._meter().battery_mv()

    def i2c(self):
        """The sensor I2C bus (a BME280 at 0x76)."""
        return self._env().i2c

    def sensor_uart(self):
        """The dust sensor's UART (an SDS011, 9600 8N1), non-blocking like machine.UART(timeout=0)."""
        return self._env().uart

    def sound_uv(self):
        """The sound-level module's output, microvolts (20 mV per dB(A))."""
        return self._env().sound_uv()

    def tasks(self):
        """Coroutines the board needs running alongside the firmware."""
        return (self._world(),) + tuple(part.run() for part in self._parts())

    def reset(self):
        """After a fatal error: the unix port exits non-zero (an ESP32 would reboot)."""
        sys.exit(1)

    async def _world(self):
        while True:
            self._advance()
            self.write_world()
            await asyncio.sleep_ms(_WORLD_PERIOD_MS)

    def write_world(self):
        """Write the physical state to ./world.json atomically."""
        lamp = self.lamp
        state = {
            "light": lamp.light,
            "power_w": lamp.power_w(),
            "relay": lamp.relay,
            "level": lamp.level,
            "temperature_c": lamp.temperature_c,
            "energy_wh": lamp.energy_wh,
            "ts": time.time(),
        }
        for part in self._parts():
            state[part.name] = part.snapshot()
        with open("world.json.tmp", "w") as f:
            json.dump(state, f)
        os.rename("world.json.tmp", "world.json")


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
