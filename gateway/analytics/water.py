"""Water meter detectors: leaks by minimum night flow, a stuck meter, consumption off the node's profile.

Minimum night flow (the utilities' method): between ``start_hour`` and
``start_hour + hours`` local time a household uses almost nothing, so a
connection where water passed in *every* ``interval_minutes`` of that window,
night after night, leaks. The meter's volume register counts whole litres, so
an interval must be long enough for the smallest leak sought to turn the wheel
once: 30 minutes finds 2 l/h. The volume at each interval boundary is the first
reading at or after it.

A stuck (or under-registering) meter shows no pulse for ``hours`` although its
learned daily use says ``expected_litres`` should have passed. The profile rule
compares each day's volume with the node's own mean for that weekday (the daily
mean until every weekday has been seen).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.analytics.flags import Flag
from gateway.analytics.settings import MeterRules

__all__ = ["MeterDetector"]


class MeterDetector:
    """The meter rules on one meter's readings; ``state`` is its memory (JSON, kept in SQLite)."""

    detector = "meter"

    def __init__(self, rules: MeterRules, utc_offset_s: float = 0.0) -> None:
        self.rules = rules
        self.offset = utc_offset_s

    def observe(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float]) -> list[Flag]:
        """Judge one reading (``volume`` in litres); returns the flags it raises."""
        volume = float(v.get("volume", 0.0))
        out: list[Flag] = []
        if self.rules.night_flow.enabled:
            out += self._night_flow(node, state, t, volume)
        out += self._days(node, state, t, volume)
        if self.rules.stuck.enabled:
            out += self._stuck(node, state, t, volume)
        return out

    # -- minimum night flow ------------------------------------------------------------------------------------

    def _night_flow(self, node: str, state: dict[str, Any], t: float, volume: float) -> list[Flag]:
        rule = self.rules.night_flow
        local = t + self.offset
        day = int(local // 86400)
        start = day * 86400 + rule.start_hour * 3600
        step = rule.interval_minutes * 60
        intervals = rule.hours * 3600 // step
        k = int((local - start) // step)  # boundary index at or before now
        mnf = state.setdefault("mnf", {"day": None, "marks": [], "streak": 0, "evidence": [], "flagged": False})
        if mnf["day"] != day:
            mnf["day"], mnf["marks"] = day, []
        if 0 <= k <= intervals and len(mnf["marks"]) == k:
            # The first reading at or after boundary k; a late first reading (gateway down) spoils the night.
            if local - (start + k * step) < step / 2:
                mnf["marks"].append([t, volume])
            else:
                mnf["marks"].append(None)
        if k != intervals or len(mnf["marks"]) != intervals + 1 or mnf.get("judged") == day:
            return []
        mnf["judged"] = day
        marks = mnf["marks"]
        if any(m is None for m in marks):
            return []
        flows = [marks[i + 1][1] - marks[i][1] for i in range(intervals)]
        lowest = min(flows)
        hours = step / 3600.0
        if lowest <= 0:
            mnf["streak"], mnf["evidence"], mnf["flagged"] = 0, [], False
            return []
        mnf["streak"] += 1
        mnf["evidence"] = (mnf["evidence"] + [[t, lowest / hours]])[-rule.nights:]
        if mnf["streak"] < rule.nights or mnf["flagged"]:
            return []
        mnf["flagged"] = True
        rates = [r for _, r in mnf["evidence"]]
        return [Flag(node, "water.night_flow", t, 0.0, min(rates), tuple((a, r) for a, r in mnf["evidence"]),
                     f"water passed in every {rule.interval_minutes}-min interval of "
                     f"{rule.start_hour:02d}:00-{rule.start_hour + rule.hours:02d}:00 for {mnf['streak']} nights; "
                     f"minimum night flow {min(rates):.1f} l/h (a household's is 0)")]

    # -- daily volumes: the profile, and what the stuck rule expects -------------------------------------------

    def _days(self, node: str, state: dict[str, Any], t: float, volume: float) -> list[Flag]:
        day = int((t + self.offset) // 86400)
        days = state.setdefault("days", {"day": day, "v0": volume, "t0": t, "totals": {}, "n": {}})
        if day == days["day"]:
            return []
        out: list[Flag] = []
        used = volume - days["v0"]
        # Only whole days teach or judge (not the first partial one), and not a day the counter went back (a new meter).
        if t - days["t0"] > 86400 * 0.9 + 3600 and used >= 0:
            weekday = str((days["day"] + 3) % 7)  # 1970-01-01 was a Thursday; 0 is Monday
            out += self._profile(node, days, weekday, used, t)
            days["totals"][weekday] = days["totals"].get(weekday, 0.0) + used
            days["n"][weekday] = days["n"].get(weekday, 0) + 1
        days.update({"day": day, "v0": volume, "t0": t})
        return out

    @staticmethod
    def _expected(days: dict[str, Any], weekday: str) -> tuple[float, int]:
        """Expected daily litres for a weekday and the days that taught it (0 if none)."""
        n_all = sum(days["n"].values())
        if days["n"].get(weekday, 0) and len(days["n"]) == 7:
            return days["totals"][weekday] / days["n"][weekday], n_all
        return (sum(days["totals"].values()) / n_all if n_all else 0.0), n_all

    def _profile(self, node: str, days: dict[str, Any], weekday: str, used: float, t: float) -> list[Flag]:
        rule = self.rules.profile
        expected, n = self._expected(days, weekday)
        if not rule.enabled or n < rule.learn_days or expected <= 0:
            return []
        if expected / rule.factor <= used <= expected * rule.factor:
            return []
        return [Flag(node, "water.profile", t, expected, used, ((days["t0"], 0.0), (t, used)),
                     f"{used:.0f} l used in the day against {expected:.0f} l expected from its own "
                     f"{'weekday' if len(days['n']) == 7 else 'daily'} profile (factor {rule.factor:g})")]

    # -- no pulses ---------------------------------------------------------------------------------------------

    def _stuck(self, node: str, state: dict[str, Any], t: float, volume: float) -> list[Flag]:
        rule = self.rules.stuck
        st = state.setdefault("stuck", {"v": volume, "since": t, "flagged": False})
        if volume != st["v"]:
            st.update({"v": volume, "since": t, "flagged": False})
            return []
        quiet = t - st["since"]
        days = state["days"]
        n = sum(days["n"].values())
        daily = sum(days["totals"].values()) / n if n else 0.0
        expected = daily * quiet / 86400.0
        if st["flagged"] or quiet < rule.hours * 3600 or expected < rule.expected_litres:
            return []
        st["flagged"] = True
        return [Flag(node, "water.stuck_meter", t, expected, 0.0, ((st["since"], volume), (t, volume)),
                     f"no pulse for {quiet / 3600:.1f} h; its {daily:.0f} l a day says {expected:.0f} l should "
                     "have passed")]
