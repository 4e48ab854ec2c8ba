"""``[analytics]``: which detectors run, per node class (role), and their thresholds.

Every rule can be switched off (``enabled = false``) or tuned per class::

    [analytics]
    baselines = "/var/lib/streetedge/baselines.db"

    [analytics.lamp.driver]
    drift = 0.08          # flag power 8 % off the lamp's own baseline at the same dim level

    [analytics.meter.night_flow]
    nights = 4

    [analytics.env]
    enabled = false       # no environment analytics at all

The structure is checked with the rest of the configuration (``gateway.service.config``), so a
misspelt key or an out-of-range value is refused with its key path, e.g.
``analytics.lamp.driver.drift: expected a number 0.005..1``.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["AnalyticsConfig", "EnvRules", "LampRules", "MeterRules"]

_Frac = Annotated[float, msgspec.Meta(ge=0.005, le=1.0)]
_Count = Annotated[int, msgspec.Meta(ge=1, le=1000)]
_Minutes = Annotated[float, msgspec.Meta(ge=1, le=1440)]


class _Rule(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    enabled: bool = True
    """Run this rule."""


class DriverRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A failing LED driver: power at a dim level drifting from the lamp's learned baseline, power factor falling."""

    learn_nights: _Count = 2
    """Nights of readings from which the baseline per dim level is learned (then kept)."""
    drift: _Frac = 0.05
    """Flag when a night's median power at a level is this share above or below its baseline."""
    pf_drop: _Frac = 0.05
    """Flag when the night's median power factor at a level falls this much below its baseline."""


class CyclingRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A cycling or flickering lamp: switched on again and again within one night."""

    switch_ons: _Count = 4
    """Flag a night with at least this many switch-ons."""


class DayBurnerRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A day-burner: lit while the astronomical clock and the photocell both say it is day."""

    minutes: _Minutes = 30
    """Flag after this long lit in daylight."""
    daylight_lux: Annotated[float, msgspec.Meta(ge=1, le=100000)] = 200
    """The photocell reads at least this in daylight."""
    margin_minutes: _Minutes = 30
    """Daylight starts this long after sunrise and ends this long before sunset (dawn and dusk are not day)."""


class CommandRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A lamp that does not follow commands: its actual level or power stays off what it was told."""

    level_tolerance: Annotated[float, msgspec.Meta(ge=1, le=100)] = 10
    """Percent between the level asked and the level reached (or implied by the power drawn)."""
    minutes: _Minutes = 30
    """Flag after this long off what was asked (a driver's thermal cut-out lasts less); cleared after as long
    following it."""


class LifeRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Remaining life from burning hours, switch-ons and driver temperature, reported daily."""

    rated_hours: Annotated[float, msgspec.Meta(ge=1000, le=1_000_000)] = 100_000
    """Rated life at ``rated_temperature`` (L70 of the luminaire)."""
    rated_temperature: Annotated[float, msgspec.Meta(ge=-40, le=125)] = 40
    """Driver temperature at which ``rated_hours`` holds; every 10 K above halves the life."""
    hours_per_switch_on: Annotated[float, msgspec.Meta(ge=0, le=100)] = 0.5
    """Life one switch-on costs, in burning hours."""


class EnergyRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Energy saved per lamp and night against full power over the same burning hours, reported daily."""


class LampRules(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[analytics.lamp]``."""

    driver: DriverRule = msgspec.field(default_factory=DriverRule)
    cycling: CyclingRule = msgspec.field(default_factory=CyclingRule)
    day_burner: DayBurnerRule = msgspec.field(default_factory=DayBurnerRule)
    commands: CommandRule = msgspec.field(default_factory=CommandRule)
    life: LifeRule = msgspec.field(default_factory=LifeRule)
    energy: EnergyRule = msgspec.field(default_factory=EnergyRule)


class NightFlowRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A leak by minimum night flow: water in every interval of the night window, several nights running."""

    start_hour: Annotated[int, msgspec.Meta(ge=0, le=23)] = 2
    """The window starts at this local hour."""
    hours: Annotated[int, msgspec.Meta(ge=1, le=12)] = 2
    """The window's length."""
    interval_minutes: Annotated[int, msgspec.Meta(ge=5, le=120)] = 30
    """The window is cut in intervals this long; a night with one dry interval has no leak."""
    nights: _Count = 3
    """Nights in a row without a dry interval before it is flagged."""


class StuckMeterRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A stuck or under-registering meter: no pulses for hours while its history says water flows then."""

    hours: Annotated[float, msgspec.Meta(ge=1, le=168)] = 12
    """Flag after this long without a pulse ..."""
    expected_litres: Annotated[float, msgspec.Meta(ge=1, le=1e6)] = 20
    """... when the meter's learned daily use says at least this much should have passed in that time."""


class ProfileRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Consumption far from the node's own profile (per weekday, once learned; daily mean before)."""

    learn_days: _Count = 7
    """Days learned before the rule judges."""
    factor: Annotated[float, msgspec.Meta(ge=1.1, le=100)] = 3
    """Flag a day that used more than ``factor`` times, or less than 1/``factor`` of, its expected volume."""


class MeterRules(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[analytics.meter]``."""

    night_flow: NightFlowRule = msgspec.field(default_factory=NightFlowRule)
    stuck: StuckMeterRule = msgspec.field(default_factory=StuckMeterRule)
    profile: ProfileRule = msgspec.field(default_factory=ProfileRule)


class FlatRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A stuck sensor: temperature, humidity or pressure exactly flat."""

    hours: Annotated[float, msgspec.Meta(ge=0.5, le=168)] = 6
    """Flag a value unchanged for this long."""


class StepRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A physically impossible step between two readings."""

    temperature_k_per_min: Annotated[float, msgspec.Meta(gt=0, le=100)] = 2
    """Largest believable temperature change per minute."""
    humidity_per_min: Annotated[float, msgspec.Meta(gt=0, le=100)] = 10
    """Largest believable relative humidity change per minute (%RH)."""


class NeighbourRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A drifting sensor: its temperature moving away from the other nodes of its street."""

    learn_hours: Annotated[float, msgspec.Meta(ge=1, le=720)] = 48
    """Hours over which the node's usual offset from its neighbours is learned."""
    kelvin: Annotated[float, msgspec.Meta(gt=0, le=50)] = 1.5
    """Flag when the offset over the last ``window_hours`` moved this far from the learned one."""
    window_hours: Annotated[float, msgspec.Meta(ge=1, le=168)] = 6
    """Hours averaged before judging (weather differs across a street for a while)."""


class AirQualityRule(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Air-quality episodes: rolling 24-hour means over the WHO 2021 guideline levels."""

    pm25: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 15
    """PM2.5 24-hour guideline, ug/m3."""
    pm10: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 45
    """PM10 24-hour guideline, ug/m3."""


class EnvRules(_Rule, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[analytics.env]``."""

    flat: FlatRule = msgspec.field(default_factory=FlatRule)
    step: StepRule = msgspec.field(default_factory=StepRule)
    neighbours: NeighbourRule = msgspec.field(default_factory=NeighbourRule)
    air: AirQualityRule = msgspec.field(default_factory=AirQualityRule)


class AnalyticsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[analytics]``: edge analytics on the readings the gateway polls."""

    enabled: bool = True
    """Run the detectors at all."""
    baselines: str = ""
    """SQLite file of the learned baselines (kept across restarts); empty: next to the outbox, or in memory."""
    utc_offset_hours: Annotated[float, msgspec.Meta(ge=-14, le=14)] = 0
    """Local time of the street, for night windows (02:00-04:00 is local)."""
    lamp: LampRules = msgspec.field(default_factory=LampRules)
    meter: MeterRules = msgspec.field(default_factory=MeterRules)
    env: EnvRules = msgspec.field(default_factory=EnvRules)
