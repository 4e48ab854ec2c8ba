"""The virtual board: the firmware's hardware layer on the MicroPython unix port.

The virtual street starts each node with its flash folder as the working
directory. ``./sim.json`` wires the virtual hardware:
``{"uart": "/dev/pts/N", "baud": 19200, "seed": 1}`` and optionally
``"ambient_c"`` (air around the driver), ``"fault"`` (``"driver"``: a dead LED
driver; ``"dimmer"``: a driver stuck at full light; ``"relay"``: a welded
relay; ``"meter"``: a metering chip that fails every read, which crashes the
node at boot, for crash-loop tests), ``"reset_cause"`` (``"watchdog"`` or
``"other"``: what the chip reports at this boot; default power on) and
``"lon"`` (longitude of the daylight model, default 0) and ``"silence_us"``
(the frame gap, see :class:`SimPort`).

``./control.json`` (optional; written by tests at any time, read within a
second) steers the virtual world while the node runs:

- ``"epoch"``: the virtual street's wall time now, Unix seconds (default: the
  host's time at boot); ``"speed"``: how many virtual seconds pass per real
  second (default 1). The board's ``ticks_ms()`` (the timebase of the node's
  clock) runs at that speed and jumps forward with a later ``"epoch"``
  (never backward); Modbus timing, physics, energy and the gateway-silence
  timer run in real time.
- ``"lux"``: the photocell's reading, overriding the daylight model (null:
  the model again). The model: solar time from the virtual wall time and
  ``lon``; 20,000 lx from 06:30 to 17:30, 1 lx from 18:30 to 05:30, linear
  in between.
- ``"mains"``: false cuts the supply upstream of the meter (0 V);
  ``"fault"``: as in ``sim.json``, from now on (null: repaired);
  ``"wear"``: a degrading driver, drawing ``1 + wear`` times the power for
  the same light (:class:`~boards.sim.lamp_parts.LampPhysics`; 0 repaired).

What the firmware gets (the same surface as ``boards/esp32_lamp``):

- ``open_rs485(baud)``: the RS-485 port, see :class:`SimPort`;
- ``relay(on)``, ``dimmer(percent)``: the lamp's outputs; ``read_meter()`` ->
  ``(voltage_V, current_A, power_W)``, ``read_temperature()``: the lamp's parts
  (:mod:`boards.sim.lamp_parts`, built the first time the firmware asks, in lamp
  images only);
- ``read_lux()`` (the photocell);
- ``ticks_ms()``: the timebase of the node's clock (virtual, see above);
- ``reset_cause()``: ``protocols.roles.common.BOOT_*``;
- ``watchdog(timeout_ms)`` -> an object with ``feed()``;
- ``ble()``: the radio, a ``bluetooth.BLE`` look-alike on the virtual radio
  (:mod:`boards.sim.bluetooth`; ``sim.json`` ``"radio"``, ``"ble_address"``), or None;
  ``ble_tx_power(ble, dbm)``, ``ble_sleep(ms)``, ``ble_uuid(text)``: the radio's
  part, :class:`boards.sim.bluetooth.Radio`, built the first time the firmware asks;
- ``flash_dir``: where the node keeps its files;
- ``tasks()``: coroutines the board needs running (here: ``control.json`` and
  the ``./world.json`` snapshot every second);
- ``reset()``: what to do after a fatal error.
- the water meter's parts (``pulse_input(counter)``, ``has_direction``,
  ``tamper()``, ``battery_mv()``) and the environment node's (``i2c()``,
  ``sensor_uart()``, ``sound_uv()``): see :mod:`boards.sim.meter_parts` and
  :mod:`boards.sim.env_parts`, built the first time the firmware asks (the
  board takes these members from the part; a meter's and an environment node's parts run
  in a process of their own, :mod:`boards.sim.sensor_host`, off the node's
  heap as real chips are), their state in ``world.json`` under ``"water"`` /
  ``"weather"``;
- ``persist_read(key)``, ``persist_write(key, data)``: the key-value flash
  (NVS on the ESP32; files ``nvs-<key>.bin`` here; ``sim.json``
  ``"flash": "readonly"`` makes writes fail), :class:`boards.sim.flash.FlashStore`.

``./world.json`` is the physical truth, for tests: ``{"light": 0..1,
"power_w", "relay", "level", "temperature_c", "energy_wh", "ts", "epoch",
"lux"}`` (``epoch``: the virtual wall time; the lamp's keys only once the
firmware drove or measured the lamp: a meter or environment node has none),
written atomically (temporary file, then rename). A restarted node continues
the previous world's energy and temperature: the lamp outlives its controller.
"""

import asyncio
import json
import os
import sys
import termios
import time

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BOOT_POWER_ON = const(0)  # protocols.roles.common.BOOT_* (tests hold them equal)
_BOOT_WATCHDOG = const(1)
_BOOT_OTHER = const(4)
_WORLD_PERIOD_MS = const(1000)
_VMIN = const(6)  # Linux indices into the termios cc list
_VTIME = const(5)
_MIN_SILENCE_US = const(10000)

# Board members that a part provides (see the module docstring): " member:module.factory", the factory
# called as factory(board, sim.json). A string, not a dict: it stays in the image (no table in RAM), and a
# member's name is interned only when the firmware asks for it (a meter never holds the lamp's names).
_PART_OF = const(
    " relay:lamp_parts.LampParts dimmer:lamp_parts.LampParts read_meter:lamp_parts.LampParts"
    " read_temperature:lamp_parts.LampParts"
    " has_direction:meter_link.MeterLink pulse_input:meter_link.MeterLink tamper:meter_link.MeterLink"
    " battery_mv:meter_link.MeterLink"
    " i2c:sensor_link.SensorLink sensor_uart:sensor_link.SensorLink sound_uv:sensor_link.SensorLink"
    " persist_read:flash.store persist_write:flash.store"
    " ble:bluetooth.Radio ble_tx_power:bluetooth.Radio ble_sleep:bluetooth.Radio ble_uuid:bluetooth.Radio "
)
_LAMP = const("lamp_parts.LampParts")


class SimPort:
    """One end of a pseudo-terminal on the virtual bus, standing in for a UART + transceiver.

    ``stream`` is an ``asyncio.StreamReader``: ``await stream.readinto(buf)``
    returns as soon as some bytes arrived (0 only when the bus has hung up);
    ``await send(buf, n)`` transmits ``buf[0:n]``. On the real board ``send``
    raises DE, writes, waits for the last stop bit, lowers DE; on a pty there is
    no direction to switch.

    ``silence_us``: how long the line must be idle before the Modbus slave
    takes it as a frame boundary (it answers t3.5 after a request whatever
    this is: a frame boundary is found by length and CRC, this only resyncs
    after garbage). A UART times the gap in hardware to the bit; a pty on a
    shared host delivers one frame's bytes with scheduling gaps (4 ms measured
    inside an 8-byte request at 19200 bit/s, load average 9 on 2 cores), which
    exceed t3.5 (2 ms) and would cut frames in two. So the virtual board takes
    at least 10 ms of silence as a boundary, unless ``sim.json`` sets
    ``"silence_us"``.
    """

    def __init__(self, path, baud, silence_us=0):
        self.baud = baud
        t35 = 1750 if baud > 19200 else (38500000 + baud - 1) // baud
        self.silence_us = silence_us or max(t35, _MIN_SILENCE_US)
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
    """The virtual node's controller board: pty UART, clock, photocell; a role's parts built on first use."""

    name = "sim"

    def __init__(self, wiring="sim.json"):
        self.flash_dir = os.getcwd()
        cfg = _load_json(wiring) or {}
        self._uart = cfg.get("uart")
        self.baud = cfg.get("baud", 19200)
        self._cfg = cfg
        self._built = {}  # parts built on first use, by their factory (_PART_OF)
        cause = cfg.get("reset_cause")
        self._cause = _BOOT_WATCHDOG if cause == "watchdog" else _BOOT_OTHER if cause == "other" else _BOOT_POWER_ON
        self.lon = cfg.get("lon", 0)
        # The virtual clock: virtual ms = _v0 + (real ms since _r0) * _speed.
        self._r0 = time.ticks_ms()
        self._v0 = 0
        self._speed = 1
        self._epoch0 = time.time()  # virtual wall time at virtual ms 0
        self._control = None
        self.ctl = {}  # control.json as last read (the lamp's parts follow it too)
        self.lux = None  # override of the daylight model
        self._read_control()

    def _virtual_ms(self):
        return self._v0 + time.ticks_diff(time.ticks_ms(), self._r0) * self._speed

    def ticks_ms(self):
        """Milliseconds in the virtual street's timebase (see ``control.json``), as ``time.ticks_ms``."""
        return time.ticks_add(0, int(self._virtual_ms()))

    def epoch(self):
        """The virtual street's wall time, Unix seconds."""
        return self._epoch0 + self._virtual_ms() / 1000

    def reset_cause(self):
        """What the chip says about the last reset (``sim.json`` ``reset_cause``)."""
        return self._cause

    def _read_control(self):
        try:
            with open("control.json") as f:
                text = f.read()
        except OSError:
            return
        if text == self._control:
            return
        self._control = text
        try:
            ctl = json.loads(text)
        except ValueError:
            return
        if not isinstance(ctl, dict):
            return
        v = int(self._virtual_ms())
        self._r0 = time.ticks_ms()
        self._v0 = v
        if "speed" in ctl:
            self._speed = max(0, ctl["speed"])
        if "epoch" in ctl:
            ahead = ctl["epoch"] - self.epoch()
            if ahead > 0:
                self._v0 += int(ahead * 1000)  # the clock jumps forward with the world
            else:
                self._epoch0 += ahead  # the world's time moves back; the ticks cannot
        self.lux = ctl.get("lux")
        self.ctl = ctl
        lamp = self._built.get(_LAMP)
        if lamp is not None:
            lamp.control(ctl)

    def open_rs485(self, baud):
        """The RS-485 port at ``baud`` (on the pty the rate only matters to the bus's pacing)."""
        if not self._uart:
            raise OSError("sim.json names no uart")
        return SimPort(self._uart, baud, self._cfg.get("silence_us", 0))

    def read_lux(self):
        """Illuminance at the photocell, lux: ``control.json`` ``lux``, else the daylight model."""
        if self.lux is not None:
            return self.lux
        h = (self.epoch() / 3600.0 + self.lon / 15.0) % 24.0
        day = min(h - 5.5, 18.5 - h)  # hours into the day from the nearer twilight's start
        if day <= 0:
            return 1.0
        return 1.0 + 19999.0 * min(day, 1.0)

    def watchdog(self, timeout_ms):
        """Start the watchdog (see :class:`SimWatchdog`)."""
        return SimWatchdog(timeout_ms)

    @property
    def diag_ms(self):
        """How often the node writes ``diag.json``: ``sim.json`` ``"diag_ms"`` (tests that watch it), else 10 s."""
        return (_load_json("sim.json") or {}).get("diag_ms", 10000)

    # -- the lamp's, the water meter's and the environment node's parts and the key-value flash, built on first use

    def __getattr__(self, name):
        # The members a role's parts provide (_PART_OF): from the part, built the first time one is asked
        # for. Only a lamp (meter, environment) image carries the lamp's (meter's, environment's) parts.
        i = _PART_OF.find(" %s:" % name)
        if i < 0:
            raise AttributeError(name)
        i += len(name) + 2
        spec = _PART_OF[i:_PART_OF.index(" ", i)]  # "module.factory"
        parts = self._built
        part = parts.get(spec)
        if part is None:
            module, _, factory = spec.partition(".")
            module = __import__(__name__ + "." + module, None, None, (factory,))
            part = parts[spec] = getattr(module, factory)(self, _load_json("sim.json") or {})
        return getattr(part, name)

    def _parts(self):
        # The parts with a state in world.json (the flash and the radio have none).
        return tuple(part for part in self._built.values() if hasattr(part, "snapshot"))

    def tasks(self):
        """Coroutines the board needs running alongside the firmware."""
        return (self._world(),) + tuple(part.run() for part in self._parts())

    def reset(self):
        """After a fatal error: the unix port exits non-zero (an ESP32 would reboot)."""
        sys.exit(1)

    async def _world(self):
        while True:
            self._read_control()
            self.write_world()
            await asyncio.sleep_ms(_WORLD_PERIOD_MS)

    def write_world(self):
        """Write the physical state to ./world.json atomically."""
        state = {"ts": time.time(), "epoch": self.epoch(), "lux": self.read_lux()}
        for part in self._parts():
            if part.name:
                state[part.name] = part.snapshot()
            else:
                state.update(part.snapshot())
        with open("world.json.tmp", "w") as f:
            json.dump(state, f)
        os.rename("world.json.tmp", "world.json")


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
