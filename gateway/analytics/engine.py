"""The analytics engine: every good poll through the detectors of its node's class, flags out, baselines kept.

The gateway hands each poll (the same readings it publishes) to
:meth:`Analytics.observe_readings`; a bench or a test hands engineering values
to :meth:`Analytics.observe`. Both run the same detectors. What a node's
detectors learned lives in a :class:`~gateway.analytics.baselines.BaselineStore`
and is loaded at start, so a restarted gateway keeps judging against the same
baselines.

Street-wide figures: when every lamp of a street (the lamps this engine has
seen on a bus) reported a night's energy, a ``lamp.street_energy_saved``
report names the street as its node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gateway.analytics.baselines import BaselineStore
from gateway.analytics.environment import EnvDetector
from gateway.analytics.flags import FLAG_SEQ_BASE, REPORT, Flag
from gateway.analytics.lamp import LampDetector
from gateway.analytics.settings import AnalyticsConfig
from gateway.analytics.water import MeterDetector
from gateway.contracts import Number, Register

__all__ = ["Analytics"]

LAMP_VALUES = ("power", "level_actual", "level_target", "power_factor", "relay", "energy", "burn_time", "switch_ons",
               "temperature", "lux", "rated_power", "latitude", "longitude")
METER_VALUES = ("volume",)
ENV_VALUES = ("temperature", "humidity", "pressure", "pm25", "pm10")
WANTED = {"lamp": LAMP_VALUES, "meter": METER_VALUES, "env": ENV_VALUES}
"""The registers each class's detectors read (converting all of a poll costs as much as the poll)."""
PEER_FRESH_S = 900.0
"""A neighbour's temperature older than this is not compared against."""


class Analytics:
    """Detectors for every node class, their states, and the flag numbering.

    Args:
        config: ``[analytics]``.
        store: where the states are kept; in memory when omitted.
        save_every: seconds of reading time between saves of the states that changed.
    """

    def __init__(self, config: AnalyticsConfig, store: BaselineStore | None = None, *,
                 save_every: float = 60.0) -> None:
        self.config = config
        self.store = store or BaselineStore()
        self.save_every = save_every
        offset = config.utc_offset_hours * 3600.0
        self.lamp = LampDetector(config.lamp, offset)
        self.meter = MeterDetector(config.meter, offset)
        self.env = EnvDetector(config.env)
        self._states = self.store.load()
        self._dirty: set[tuple[str, str]] = set()
        self._saved_at: float | None = None
        self._index: dict[tuple[str, int], list[tuple[int, str]]] = {}
        self._peers: dict[str, dict[str, tuple[float, float]]] = {}
        self._street_lamps: dict[str, set[str]] = {}
        self._street_nights: dict[tuple[str, int], list[Flag]] = {}
        self.readings = 0
        """Readings judged."""

    # -- in ------------------------------------------------------------------------------------------------------

    def observe_readings(self, node: str, role: str, street: str, t: float,
                         readings: Sequence[tuple[Register, Number]]) -> list[Flag]:
        """One poll as the poller reports it (``(register, raw)`` in map order): convert what is needed, judge."""
        wanted = WANTED.get(role)
        if wanted is None or not self.config.enabled:
            return []
        key = (role, len(readings))
        index = self._index.get(key)
        if index is None or any(readings[i][0].name != name for i, name in index):
            index = self._index[key] = [(i, reg.name) for i, (reg, _) in enumerate(readings) if reg.name in wanted]
        values = {name: float(readings[i][0].value(readings[i][1])) for i, name in index}
        return self.observe(node, role, street, t, values)

    def observe(self, node: str, role: str, street: str, t: float, values: Mapping[str, float]) -> list[Flag]:
        """One reading of ``node`` (engineering values by register name) at ``t``: the flags it raises."""
        config = self.config
        if not config.enabled:
            return []
        self.readings += 1
        flags: list[Flag]
        if role == "lamp" and config.lamp.enabled:
            flags = self.lamp.observe(node, self._state(node, "lamp"), t, values)
            self._street_lamps.setdefault(street, set()).add(node)
            flags += self._street(street, flags)
        elif role == "meter" and config.meter.enabled:
            flags = self.meter.observe(node, self._state(node, "meter"), t, values)
        elif role == "env" and config.env.enabled:
            peers = self._peers.setdefault(street, {})
            fresh = [temp for other, (when, temp) in peers.items()
                     if other != node and t - when < PEER_FRESH_S and not self._suspect(other)]
            flags = self.env.observe(node, self._state(node, "env"), t, values, fresh)
            if "temperature" in values:
                peers[node] = (t, float(values["temperature"]))
        else:
            return []
        if self._saved_at is None:
            self._saved_at = t
        elif t - self._saved_at >= self.save_every:
            self.save()
            self._saved_at = t
        return flags

    def _suspect(self, node: str) -> bool:
        """An environment node whose thermometer is flagged (stuck or drifting) is no reference for others."""
        state = self._states.get((node, "env"), {})
        flat = state.get("flat", {}).get("temperature")
        return bool(state.get("nb", {}).get("flagged") or (flat is not None and flat[2]))

    def _state(self, node: str, detector: str) -> dict[str, Any]:
        key = (node, detector)
        self._dirty.add(key)
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = {}
        return state

    def _street(self, street: str, flags: list[Flag]) -> list[Flag]:
        out: list[Flag] = []
        for flag in flags:
            if flag.rule != "lamp.energy_saved":
                continue
            night = int(dict(flag.extra)["night"])
            reports = self._street_nights.setdefault((street, night), [])
            reports.append(flag)
            if len(reports) == len(self._street_lamps[street]):
                out.append(street_report(street, night, reports))
                del self._street_nights[(street, night)]
        # A lamp that never reported a night (offline) must not hold its street's figure forever.
        for key in [k for k in self._street_nights if k[0] == street and any(
                int(dict(f.extra)["night"]) > k[1] for f in flags if f.rule == "lamp.energy_saved")]:
            out.append(street_report(street, key[1], self._street_nights.pop(key)))
        return out

    # -- numbering and keeping ---------------------------------------------------------------------------------

    def next_seq(self, node: str) -> int:
        """The seq of the node's next analytics record (kept with the baselines: unique across restarts)."""
        state = self._state(node, "seq")
        n = int(state.get("next", 0))
        state["next"] = n + 1
        return FLAG_SEQ_BASE + n

    def state(self, node: str, detector: str) -> dict[str, Any]:
        """A node's detector state as it stands (read-only use: tests, the dashboard)."""
        return self._states.get((node, detector), {})

    def save(self) -> None:
        """Write the states that changed since the last save."""
        self.store.save({k: self._states[k] for k in self._dirty if k in self._states})
        self._dirty.clear()

    def close(self) -> None:
        """Save and close the store."""
        self.save()
        self.store.close()


def street_report(street: str, night: int, reports: list[Flag]) -> Flag:
    """The street's energy figure for a night: the sum over its lamps' reports."""
    used = sum(dict(f.extra)["used_wh"] for f in reports)
    full = sum(dict(f.extra)["full_wh"] for f in reports)
    saved = full - used
    share = saved / full if full > 0 else 0.0
    t = max(f.time for f in reports)
    return Flag(street, "lamp.street_energy_saved", t, full, saved, tuple((f.time, dict(f.extra)["saved_wh"])
                                                                          for f in reports[:8]),
                f"night {night}: {len(reports)} lamps used {used:.0f} Wh against {full:.0f} Wh at full power: "
                f"{saved:.0f} Wh ({share:.1%}) saved", REPORT,
                (("full_wh", full), ("lamps", float(len(reports))), ("night", float(night)), ("saved_wh", saved),
                 ("share", share), ("used_wh", used)))
