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
  the same light (:class:`~boards.sim.lamp_physics.LampPhysics`; 0 repaired).

What the firmware gets (the same surface as ``boards/esp32_lamp``):

- ``open_rs485(baud)``: the RS-485 port, see :class:`SimPort`;
- ``relay(on)``, ``dimmer(percent)``: the lamp's outputs;
- ``read_meter()`` -> ``(voltage_V, current_A, power_W)``, ``read_temperature()``,
  ``read_lux()`` (the photocell);
- ``ticks_ms()``: the timebase of the node's clock (virtual, see above);
- ``reset_cause()``: ``protocols.roles.common.BOOT_*``;
- ``watchdog(timeout_ms)`` -> an object with ``feed()``;
- ``ble()``: the radio, a ``bluetooth.BLE`` look-alike on the virtual radio
  (:mod:`boards.sim.bluetooth`; ``sim.json`` ``"radio"``, ``"ble_address"``), or None;
- ``flash_dir``: where the node keeps its files;
- ``tasks()``: coroutines the board needs running (here: the physics and the
  ``./world.json`` snapshot every second);
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
    """The virtual lamp-post controller: pty UART, relay, dimmer, meter, thermometer."""

    name = "sim"

    def __init__(self, wiring="sim.json"):
        self.flash_dir = os.getcwd()
        cfg = _load_json(wiring) or {}
        self._uart = cfg.get("uart")
        self.baud = cfg.get("baud", 19200)
        self._cfg = cfg
        self._built = {}  # parts built on first use: "meter", "env", "flash"
        self._lamp = None  # the lamp's physics, built when the firmware first drives or measures it
        self._fault = cfg.get("fault")
        self.meter_fault = self._fault == "meter"
        self._mains = True
        cause = cfg.get("reset_cause")
        self._cause = _BOOT_WATCHDOG if cause == "watchdog" else _BOOT_OTHER if cause == "other" else _BOOT_POWER_ON
        self.lon = cfg.get("lon", 0)
        self._last_ms = time.ticks_ms()
        # The virtual clock: virtual ms = _v0 + (real ms since _r0) * _speed.
        self._r0 = self._last_ms
        self._v0 = 0
        self._speed = 1
        self._epoch0 = time.time()  # virtual wall time at virtual ms 0
        self._control = None
        self.lux = None  # override of the daylight model
        self._wear = 0.0
        self._read_control()

    @property
    def lamp(self):
        """The lamp's physics (:class:`~boards.sim.lamp_physics.LampPhysics`): only a lamp node builds it."""
        lamp = self._lamp
        if lamp is None:
            from .lamp_physics import LampPhysics

            cfg = self._cfg
            prev = _load_json("world.json") or {}
            lamp = self._lamp = LampPhysics(
                seed=cfg.get("seed", 0),
                ambient_c=cfg.get("ambient_c", 20.0),
                temperature_c=prev.get("temperature_c"),
                energy_wh=prev.get("energy_wh", 0.0),
            )
            lamp.mains = self._mains
            lamp.wear = self._wear
            self._apply_fault(self._fault)
        return lamp

    def _apply_fault(self, fault):
        self._fault = fault
        self.meter_fault = fault == "meter"
        lamp = self._lamp
        if lamp is None:
            return
        lamp.failed = fault == "driver"
        lamp.stuck = fault == "dimmer"
        lamp.welded = fault == "relay"
        if lamp.welded:
            lamp.set_relay(True)

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
        self._mains = ctl.get("mains", True) is not False
        if self._lamp is not None:
            self._lamp.mains = self._mains
        if "fault" in ctl:
            self._apply_fault(ctl["fault"])
        self._wear = ctl.get("wear", 0.0) or 0.0
        if self._lamp is not None:
            self._lamp.wear = self._wear

    def _advance(self):
        now = time.ticks_ms()
        lamp = self._lamp
        if lamp is not None:
            lamp.step(time.ticks_diff(now, self._last_ms) / 1000.0)
        self._last_ms = now

    def open_rs485(self, baud):
        """The RS-485 port at ``baud`` (on the pty the rate only matters to the bus's pacing)."""
        if not self._uart:
            raise OSError("sim.json names no uart")
        return SimPort(self._uart, baud, self._cfg.get("silence_us", 0))

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
        if self.meter_fault:
            raise OSError("metering chip does not answer")
        self._advance()
        return self.lamp.measure()

    def read_lux(self):
        """Illuminance at the photocell, lux: ``control.json`` ``lux``, else the daylight model."""
        if self.lux is not None:
            return self.lux
        h = (self.epoch() / 3600.0 + self.lon / 15.0) % 24.0
        day = min(h - 5.5, 18.5 - h)  # hours into the day from the nearer twilight's start
        if day <= 0:
            return 1.0
        return 1.0 + 19999.0 * min(day, 1.0)

    def read_temperature(self):
        """Driver temperature in degrees Celsius."""
        self._advance()
        return self.lamp.thermometer()

    def watchdog(self, timeout_ms):
        """Start the watchdog (see :class:`SimWatchdog`)."""
        return SimWatchdog(timeout_ms)

    def ble(self):
        """The radio (:mod:`boards.sim.bluetooth` on the radio host of ``sim.json`` ``"radio"``), None if unwired.

        ``sim.json`` ``"ble_address"`` is the node's static random address.
        """
        cfg = _load_json("sim.json") or {}
        if not cfg.get("radio"):
            return None
        from .bluetooth import BLE

        return BLE(cfg["radio"], cfg.get("ble_address") or "D0:00:00:00:00:%02X" % (cfg.get("seed", 0) & 0xFF))

    @property
    def diag_ms(self):
        """How often the node writes ``diag.json``: ``sim.json`` ``"diag_ms"`` (tests that watch it), else 10 s."""
        return (_load_json("sim.json") or {}).get("diag_ms", 10000)

    def ble_uuid(self, text):
        """A GATT UUID for ``gatts_register_services`` (:class:`boards.sim.bluetooth.UUID`)."""
        from .bluetooth import UUID

        return UUID(text)

    # -- the water meter's and the environment node's parts and the key-value flash, built on first use

    def __getattr__(self, name):
        # The members a role's parts provide (_PART_OF): from the part, built the first time one is asked
        # for. Only a meter (environment) image carries the meter's (environment's) parts.
        kind = _PART_OF.get(name)
        if kind is None:
            raise AttributeError(name)
        parts = self._built
        part = parts.get(kind)
        if part is None:
            cfg = _load_json("sim.json") or {}
            if kind == "meter":
                from .sensor_link import MeterLink  # the parts run in a process of their own

                part = MeterLink()
            elif kind == "env":
                from .sensor_link import SensorLink

                part = SensorLink()
            else:
                from .flash import FlashStore

                part = FlashStore(self.flash_dir, cfg.get("flash") == "readonly")
            parts[kind] = part
        return getattr(part, name)

    def _parts(self):
        return tuple(part for kind, part in self._built.items() if kind != "flash")

    def tasks(self):
        """Coroutines the board needs running alongside the firmware."""
        return (self._world(),) + tuple(part.run() for part in self._parts())

    def reset(self):
        """After a fatal error: the unix port exits non-zero (an ESP32 would reboot)."""
        sys.exit(1)

    async def _world(self):
        while True:
            self._read_control()
            self._advance()
            self.write_world()
            await asyncio.sleep_ms(_WORLD_PERIOD_MS)

    def write_world(self):
        """Write the physical state to ./world.json atomically."""
        state = {"ts": time.time(), "epoch": self.epoch(), "lux": self.read_lux()}
        lamp = self._lamp
        if lamp is not None:
            state["light"] = lamp.light
            state["power_w"] = lamp.power_w()
            state["relay"] = lamp.relay
            state["level"] = lamp.level
            state["temperature_c"] = lamp.temperature_c
            state["energy_wh"] = lamp.energy_wh
        for part in self._parts():
            state[part.name] = part.snapshot()
        with open("world.json.tmp", "w") as f:
            json.dump(state, f)
        os.rename("world.json.tmp", "world.json")


# Board members that a part provides (see the module docstring): name -> part.
_PART_OF = {
    "has_direction": "meter", "pulse_input": "meter", "tamper": "meter", "battery_mv": "meter",
    "i2c": "env", "sensor_uart": "env", "sound_uv": "env",
    "persist_read": "flash", "persist_write": "flash",
}


def _load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
