"""A simulated street for ``streetedge bench analytics``: a month of lamps, meters and sensors in seconds.

The physics are the virtual board's (:mod:`boards.sim.lamp_parts`,
:mod:`boards.sim.water`, :mod:`boards.sim.weather`) with faults from a seeded
:class:`boards.sim.faults.FaultPlan`; what a node would put in its registers
(counters, rounding to the register's step) is made here, turned into raw
register values through the role's register map, and handed to the gateway's
:meth:`gateway.analytics.Analytics.observe_readings`, exactly as the poller
hands a poll. Time is simulated: a poll every ``poll_s`` seconds of street time.

The lamps follow a program like the firmware's: on at sunset (astronomical
clock), 100 % until 23:00, 50 % until 05:00, 100 % until sunrise, off; a
lamp's photocell reads 20,000 lx by day and 1 lx by night.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from boards.sim.faults import Fault, FaultPlan
from boards.sim.lamp_parts import LampPhysics
from boards.sim.water import WaterPhysics
from boards.sim.weather import WeatherPhysics
from gateway.analytics import Analytics, AnalyticsConfig, Flag
from gateway.analytics.lamp import daylight
from gateway.contracts import Number, Register, load_role

T0 = datetime.datetime(2026, 3, 2, tzinfo=datetime.UTC).timestamp()
"""The simulated month starts at this midnight (UTC; the street's local time is UTC)."""
LAT, LON = 48.85, 2.35
RATED_W = 66.0
"""The luminaires' rated power at 100 % (the physics draw 65.7 W at full light)."""


def _raw(reg: Register, value: float) -> Number:
    """An engineering value as the node's register holds it: rounded to the register's step, within its bounds."""
    raw = round(value / 10.0 ** reg.scale) if reg.scale else round(value)
    return max(reg.minimum, min(reg.maximum, raw))


class _Node:
    """One node of the street: its physics, its register values, and the readings the poller would hand on."""

    def __init__(self, node_id: str, role: str) -> None:
        self.id = node_id
        self.role = role
        self.regmap = load_role(role)
        self.values: dict[str, float] = {}
        self._zeros: list[tuple[Register, Number]] = [(reg, _raw(reg, 0.0)) for reg in self.regmap.registers]
        self._index = {reg.name: i for i, reg in enumerate(self.regmap.registers)}
        self.fault: Fault | None = None

    def run(self, t: float, dt: float) -> None:
        """Advance the node's world from ``t`` to ``t + dt``, updating its register values."""
        raise NotImplementedError

    def readings(self) -> list[tuple[Register, Number]]:
        """Every register of the map, as a poll hands them on: those the node model sets, the rest at 0."""
        readings = list(self._zeros)
        for name, value in self.values.items():
            i = self._index[name]
            readings[i] = (readings[i][0], _raw(readings[i][0], value))
        return readings


class _Lamp(_Node):
    def __init__(self, node_id: str, seed: int) -> None:
        super().__init__(node_id, "lamp")
        self.physics = LampPhysics(seed=seed, ambient_c=12.0)
        self.burn_s = 0.0
        self.switch_ons = 0
        self.values.update(rated_power=RATED_W, latitude=LAT, longitude=LON)

    def run(self, t: float, dt: float) -> None:
        """Advance to ``t + dt``: the program decides, the physics follow."""
        lamp = self.physics
        day = daylight(t, LAT, LON, 0.0)
        level = 0 if day else (50 if (t % 86400) >= 23 * 3600 or (t % 86400) < 5 * 3600 else 100)
        on = level > 0
        if on and not lamp.relay:
            self.switch_ons += 1
        if on:
            lamp.set_level(level)
        lamp.set_relay(on)  # a welded relay stays closed, at the level it had at dawn
        for _ in range(int(dt // 60)):
            lamp.step(60.0)
            if lamp.relay and lamp.light > 0:
                self.burn_s += 60.0
        _v, i, p = lamp.measure()
        self.values.update(
            power=p, current=i, voltage=_v, energy=math.floor(lamp.energy_wh), temperature=lamp.thermometer(),
            level_actual=round(lamp.light * 100), level_target=level if lamp.relay else 0, dim_level=level,
            relay=1.0 if lamp.relay else 0.0, power_factor=lamp.power_factor() if p > 0 else 0.0,
            burn_time=self.burn_s, switch_ons=self.switch_ons, lux=20000.0 if day else 1.0)


class _Meter(_Node):
    def __init__(self, node_id: str, seed: int) -> None:
        super().__init__(node_id, "meter")
        self.physics = WaterPhysics(seed=seed)
        self.counted = 0.0

    def run(self, t: float, dt: float) -> None:
        self.counted += self.physics.counted_between(t, t + dt)
        self.values["volume"] = math.floor(self.counted)


class _Env(_Node):
    def __init__(self, node_id: str, seed: int, bias_k: float) -> None:
        super().__init__(node_id, "env")
        self.physics = WeatherPhysics(seed=seed)
        self.physics.configure({"bias_k": bias_k})

    def run(self, t: float, dt: float) -> None:
        w = self.physics.at(t + dt)
        self.values.update(temperature=w["temperature_c"], humidity=w["humidity"], pressure=w["pressure_pa"],
                           pm25=w["pm25"], pm10=w["pm10"], noise=w["noise_db"])


@dataclass
class Month:
    """What a simulated period gave: the ground truth, every record the detectors raised, the readings judged."""

    days: int
    nodes: dict[str, str]
    faults: list[Fault]
    flags: list[Flag] = field(default_factory=list)
    readings: int = 0
    truth_energy: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    """(lamp, night) -> (Wh the physics drew while the night's readings were taken, burning hours)."""


def simulate(*, lamps: int, meters: int, envs: int, days: int, seed: int, share: float, poll_s: float = 300.0,
             config: AnalyticsConfig | None = None, analytics: Analytics | None = None,
             progress: Callable[[int], None] | None = None) -> Month:
    """Run ``days`` of a street with faults drawn at ``share`` through the detectors; see the module docstring."""
    plan = FaultPlan(seed, T0, days, share=share)
    # Baselines are kept once a simulated day (the gateway keeps them every minute of real time).
    engine = analytics or Analytics(config or AnalyticsConfig(), save_every=86400.0)
    nodes: list[_Node] = []
    for i in range(lamps):
        nodes.append(_Lamp(f"lamp-{i}", seed * 1000 + i))
    for i in range(meters):
        nodes.append(_Meter(f"meter-{i}", seed * 1000 + 100 + i))
    for i in range(envs):
        nodes.append(_Env(f"env-{i}", seed * 1000 + 200 + i, bias_k=((i * 37) % 11 - 5) / 10.0))
    drawn = plan.draw([(node.id, node.role) for node in nodes])
    for node in nodes:
        node.fault = drawn.get(node.id)
        if node.fault is not None and isinstance(node, _Meter):
            node.physics.configure(node.fault.settings(), T0)
        elif node.fault is not None and isinstance(node, _Env):
            node.physics.configure(node.fault.settings())
    month = Month(days, {n.id: n.role for n in nodes}, plan.truth)
    night_start: dict[str, list[float]] = {}
    steps = int(days * 86400 / poll_s)
    for k in range(steps):
        t = T0 + k * poll_s
        now = t + poll_s
        for node in nodes:
            fault = node.fault
            if isinstance(node, _Lamp) and fault is not None and t <= fault.start < now:
                fault.apply_lamp(node.physics)
            node.run(t, poll_s)
            if isinstance(node, _Lamp):
                _truth_energy(month, night_start, node, now)
            month.flags += engine.observe_readings(node.id, node.role, "street-1", now, node.readings())
            month.readings += 1
        if progress is not None and k % int(86400 / poll_s) == 0:
            progress(k // int(86400 / poll_s))
    engine.save()
    return month


def _truth_energy(month: Month, nights: dict[str, list[float]], lamp: _Lamp, now: float) -> None:
    """The physics' own energy and burning time per night (noon to noon), from the first to the last poll of the
    night, as the detectors see it (their figures come from the node's registers)."""
    night = int((now - 43200.0) // 86400.0)
    energy, burn = lamp.physics.energy_wh, lamp.burn_s
    seen = nights.get(lamp.id)
    if seen is not None and seen[0] != night:
        month.truth_energy[(lamp.id, int(seen[0]))] = (seen[3] - seen[1], (seen[4] - seen[2]) / 3600.0)
    if seen is None or seen[0] != night:
        seen = nights[lamp.id] = [float(night), energy, burn, energy, burn]
    seen[3], seen[4] = energy, burn
