"""Environment node detectors: stuck or drifting sensors, impossible steps, air-quality episodes.

- Flat: temperature, humidity or pressure that has not changed at all for
  ``hours`` (real air never holds a hundredth of a degree that long).
- Step: a change between two readings faster than air can change.
- Neighbours: the node's temperature against the median of the other
  environment nodes of its street at the same time. Its usual offset (a
  sunny corner, a wall) is learned over ``learn_hours``; a drift is the mean
  offset over the last ``window_hours`` moving ``kelvin`` away from it.
- Air quality: rolling 24-hour means of PM2.5 and PM10 (hourly buckets) over the
  WHO 2021 24-hour guideline levels; flagged when an episode starts.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.analytics.flags import Flag
from gateway.analytics.settings import EnvRules

__all__ = ["FLAT_FIELDS", "EnvDetector"]

FLAT_FIELDS = ("temperature", "humidity", "pressure")
"""The values the flat rule watches (a dust sensor reads exactly 0.0 in clean air: not watched)."""


class EnvDetector:
    """The environment rules on one node's readings; ``state`` is its memory (JSON, kept in SQLite)."""

    detector = "env"

    def __init__(self, rules: EnvRules) -> None:
        self.rules = rules

    def observe(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float],
                peers: Sequence[float] = ()) -> list[Flag]:
        """Judge one reading; ``peers`` are the street's other nodes' latest temperatures."""
        out: list[Flag] = []
        rules = self.rules
        if rules.flat.enabled:
            out += self._flat(node, state, t, v)
        if rules.step.enabled:
            out += self._step(node, state, t, v)
        flat = state.get("flat", {}).get("temperature")
        moving = flat is None or t - flat[1] < 3600.0  # a flat thermometer is the flat rule's case
        if rules.neighbours.enabled and len(peers) >= 2 and "temperature" in v and moving:
            out += self._neighbours(node, state, t, float(v["temperature"]), peers)
        if rules.air.enabled:
            out += self._air(node, state, t, v)
        state["prev"] = [t, {k: float(v[k]) for k in FLAT_FIELDS if k in v}]
        return out

    def _flat(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float]) -> list[Flag]:
        out: list[Flag] = []
        flat = state.setdefault("flat", {})
        for name in FLAT_FIELDS:
            if name not in v:
                continue
            value = float(v[name])
            seen = flat.get(name)
            if seen is None or seen[0] != value:
                flat[name] = [value, t, False]
                continue
            if not seen[2] and t - seen[1] >= self.rules.flat.hours * 3600:
                seen[2] = True
                out.append(Flag(node, f"env.flat_{name}", t, value, value, ((seen[1], value), (t, value)),
                                f"{name} has read exactly {value:g} since {seen[1]:.0f} "
                                f"({(t - seen[1]) / 3600:.1f} h): a stuck sensor"))
        return out

    def _step(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float]) -> list[Flag]:
        prev = state.get("prev")
        if prev is None or t <= prev[0]:
            return []
        t0, old = prev
        minutes = max((t - t0) / 60.0, 1.0)  # a step within a minute is judged as a minute's
        limits = {"temperature": self.rules.step.temperature_k_per_min, "humidity": self.rules.step.humidity_per_min}
        out: list[Flag] = []
        for name, per_min in limits.items():
            if name in v and name in old and abs(float(v[name]) - old[name]) > per_min * minutes:
                out.append(Flag(node, f"env.step_{name}", t, old[name], float(v[name]),
                                ((t0, old[name]), (t, float(v[name]))),
                                f"{name} jumped from {old[name]:g} to {float(v[name]):g} in {(t - t0):.0f} s "
                                f"(at most {per_min:g} per minute is physical)"))
        return out

    def _neighbours(self, node: str, state: dict[str, Any], t: float, temp: float,
                    peers: Sequence[float]) -> list[Flag]:
        rule = self.rules.neighbours
        offset = temp - statistics.median(peers)
        nb = state.setdefault("nb", {"t0": t, "sum": 0.0, "n": 0, "win": [], "flagged": False})
        if t - nb["t0"] < rule.learn_hours * 3600:
            nb["sum"] += offset
            nb["n"] += 1
            return []
        if not nb["n"]:
            return []
        base = nb["sum"] / nb["n"]
        hour = int(t // 3600)
        win = nb["win"]
        if win and win[-1][0] == hour:
            win[-1][1] += offset
            win[-1][2] += 1
        else:
            win.append([hour, offset, 1])
        del win[: max(0, len(win) - int(rule.window_hours))]
        if len(win) < int(rule.window_hours):
            return []
        mean = sum(w[1] for w in win) / sum(w[2] for w in win)
        if abs(mean - base) <= rule.kelvin:
            if abs(mean - base) <= rule.kelvin / 2:  # hysteresis: a drift near the limit flags once
                nb["flagged"] = False
            return []
        if nb["flagged"]:
            return []
        nb["flagged"] = True
        return [Flag(node, "env.drift", t, base, mean, tuple((w[0] * 3600.0, w[1] / w[2]) for w in win),
                     f"temperature {mean:+.2f} K from its street's median over {len(win)} h, against "
                     f"{base:+.2f} K learned: a drifting sensor")]

    def _air(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float]) -> list[Flag]:
        out: list[Flag] = []
        air = state.setdefault("air", {})
        hour = int(t // 3600)
        for name, limit in (("pm25", self.rules.air.pm25), ("pm10", self.rules.air.pm10)):
            if name not in v:
                continue
            a = air.setdefault(name, {"hours": [], "on": False})
            hours = a["hours"]
            if hours and hours[-1][0] == hour:
                hours[-1][1] += float(v[name])
                hours[-1][2] += 1
            else:
                hours.append([hour, float(v[name]), 1])
            while hours and hours[0][0] <= hour - 24:
                del hours[0]
            if hours[0][0] > hour - 23:  # less than a day seen: no 24-hour mean yet
                continue
            mean = sum(h[1] / h[2] for h in hours) / len(hours)
            if mean <= limit:
                a["on"] = False
                continue
            if a["on"]:
                continue
            a["on"] = True
            out.append(Flag(node, f"env.{name}_episode", t, limit, mean,
                            tuple((h[0] * 3600.0, h[1] / h[2]) for h in hours[-6:]),
                            f"{name} 24-hour mean {mean:.1f} ug/m3 over the WHO guideline of {limit:g}"))
        return out
