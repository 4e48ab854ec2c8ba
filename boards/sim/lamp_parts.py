"""The virtual lamp post's parts: supply relay, LED driver (dimmer), metering chip, driver thermometer.

Built by the virtual board (:mod:`boards.sim`) the first time the firmware
drives or measures the lamp, over :class:`~boards.sim.lamp_physics.LampPhysics`,
and carried by lamp images only (``board.json`` ``role_modules``): a meter or
an environment node holds none of it. Faults and supply follow ``sim.json``
``"fault"`` at boot and ``control.json`` (``"mains"``, ``"fault"``,
``"wear"``) as the board reads it. A new lamp continues the previous
``world.json``'s energy and temperature: the lamp outlives its controller.
"""

import json
import time

from .lamp_physics import LampPhysics


class LampParts:
    """The board members ``relay``, ``dimmer``, ``read_meter`` and ``read_temperature``, and the lamp's state."""

    name = ""  # its state goes at the top of world.json

    def __init__(self, board, cfg):
        try:
            with open("world.json") as f:
                prev = json.load(f)
        except (OSError, ValueError):
            prev = {}
        self.physics = LampPhysics(seed=cfg.get("seed", 0), ambient_c=cfg.get("ambient_c", 20.0),
                                   temperature_c=prev.get("temperature_c"), energy_wh=prev.get("energy_wh", 0.0))
        self._last_ms = time.ticks_ms()
        self.meter_fault = False
        self.control(board.ctl, cfg.get("fault"))

    def control(self, ctl, fault=None):
        """Follow ``control.json`` (parsed by the board): supply, faults (``fault``: the one before, if not named)."""
        lamp = self.physics
        lamp.mains = ctl.get("mains", True) is not False
        lamp.wear = ctl.get("wear", 0.0) or 0.0
        if "fault" in ctl:
            fault = ctl["fault"]
        elif fault is None:
            return
        self.meter_fault = fault == "meter"
        lamp.failed = fault == "driver"
        lamp.stuck = fault == "dimmer"
        lamp.welded = fault == "relay"
        if lamp.welded:
            lamp.set_relay(True)

    def _advance(self):
        now = time.ticks_ms()
        self.physics.step(time.ticks_diff(now, self._last_ms) / 1000.0)
        self._last_ms = now

    def relay(self, on):
        """Close (True) or open (False) the lamp's supply relay."""
        self._advance()
        self.physics.set_relay(on)

    def dimmer(self, percent):
        """Set the driver's dim level, 0..100 %."""
        self._advance()
        self.physics.set_level(percent)

    def read_meter(self):
        """``(voltage_V, current_A, power_W)`` from the metering chip."""
        if self.meter_fault:
            raise OSError("metering chip does not answer")
        self._advance()
        return self.physics.measure()

    def read_temperature(self):
        """Driver temperature in degrees Celsius."""
        self._advance()
        return self.physics.thermometer()

    async def run(self):
        """Nothing to run: the physics advance at every call and every world snapshot."""

    def snapshot(self):
        """The lamp's keys of ``world.json``."""
        self._advance()
        lamp = self.physics
        return {"light": lamp.light, "power_w": lamp.power_w(), "relay": lamp.relay, "level": lamp.level,
                "temperature_c": lamp.temperature_c, "energy_wh": lamp.energy_wh}
