"""The virtual lamp post's parts: supply relay, driver dimmer, metering chip and driver thermometer.

The virtual board builds them the first time the firmware drives or measures
the lamp (``relay``, ``dimmer``, ``read_meter``, ``read_temperature``), on
:class:`~boards.sim.lamp_physics.LampPhysics`; only a lamp image carries this
module (``board.json`` ``role_modules``), so a meter or an environment node
has no lamp, neither in its heap nor in its world. The lamp's state goes at
the top of ``world.json`` (``light``, ``power_w``, ``relay``, ``level``,
``temperature_c``, ``energy_wh``); a restarted node continues the previous
world's energy and temperature.
"""

import time

from .lamp_physics import LampPhysics


class LampParts:
    """The lamp post's hardware on ``board`` (its wiring ``cfg``; ``prev``: the last ``world.json``)."""

    name = None  # its state is the world's top level, not a part's key

    def __init__(self, board, cfg, prev):
        self._board = board
        self.physics = LampPhysics(
            seed=cfg.get("seed", 0),
            ambient_c=cfg.get("ambient_c", 20.0),
            temperature_c=prev.get("temperature_c"),
            energy_wh=prev.get("energy_wh", 0.0),
        )
        self._last_ms = time.ticks_ms()

    def supply(self, mains, wear):
        """The mains upstream (False: cut) and the driver's wear (see ``control.json``)."""
        self.physics.mains = mains
        self.physics.wear = wear

    def fault(self, fault):
        """Apply ``sim.json``/``control.json`` ``fault`` (``driver``, ``dimmer``, ``relay``; None repairs)."""
        lamp = self.physics
        lamp.failed = fault == "driver"
        lamp.stuck = fault == "dimmer"
        lamp.welded = fault == "relay"
        if lamp.welded:
            lamp.set_relay(True)

    def advance(self):
        """Move the physics to now."""
        now = time.ticks_ms()
        self.physics.step(time.ticks_diff(now, self._last_ms) / 1000.0)
        self._last_ms = now

    def relay(self, on):
        """Close (True) or open (False) the lamp's supply relay."""
        self.advance()
        self.physics.set_relay(on)

    def dimmer(self, percent):
        """Set the driver's dim level, 0..100 %."""
        self.advance()
        self.physics.set_level(percent)

    def read_meter(self):
        """``(voltage_V, current_A, power_W)`` from the metering chip."""
        if self._board.meter_fault:
            raise OSError("metering chip does not answer")
        self.advance()
        return self.physics.measure()

    def read_temperature(self):
        """Driver temperature in degrees Celsius."""
        self.advance()
        return self.physics.thermometer()

    def snapshot(self):
        """The lamp's keys of world.json."""
        self.advance()
        lamp = self.physics
        return {"light": lamp.light, "power_w": lamp.power_w(), "relay": lamp.relay, "level": lamp.level,
                "temperature_c": lamp.temperature_c, "energy_wh": lamp.energy_wh}
