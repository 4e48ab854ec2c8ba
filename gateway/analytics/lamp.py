"""Lamp detectors: a failing driver, cycling, a day-burner, commands not followed; energy saved and life left.

Each lamp's history is cut into nights (a night runs from local noon to the next
noon, named by its evening). During a night the detector keeps running sums in
the lamp's state; when the first reading after noon arrives, the night closes:
the driver is judged against its baseline, and the energy and life reports go
out. Cycling, day-burning and commands are judged as readings come.

The driver's baseline is learned from the lamp's own first nights
(``learn_nights``): mean power and power factor per dim level (10 % steps,
settled readings only), then kept. A driver whose electronics degrade draws
more power for the same light, and its power factor falls.
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Mapping
from typing import Any

import astral
import astral.sun

from gateway.analytics.flags import REPORT, Flag
from gateway.analytics.settings import LampRules

__all__ = ["LampDetector", "daylight", "night_of"]

LIT_W = 2.0
"""Below this a lamp is dark (a driver's standby draw is about 0.5 W)."""
MIN_SAMPLES = 3
"""Settled readings at a dim level before a night's mean at that level counts."""
HISTORY = 7
"""Nights of driver ratios kept as evidence."""
POWER_SLACK = 3.0
"""A lamp's power may stray this many level tolerances from its baseline at the level asked before it counts as
not following (a worn driver drifts by a few percent; a dimmer stuck at full draws twice the power of 50 %)."""


def night_of(t: float, utc_offset_s: float) -> int:
    """The night a time belongs to: days since the epoch of its evening (local noon to noon)."""
    return int((t + utc_offset_s - 43200.0) // 86400.0)


@functools.lru_cache(maxsize=4096)
def _sun(day: int, lat: float, lon: float) -> tuple[float, float]:
    """Sunrise and sunset (epoch s) of UTC day ``day`` at a place; polar day/night as (day start, day end)."""
    date = datetime.date(1970, 1, 1) + datetime.timedelta(days=day)
    try:
        s = astral.sun.sun(astral.Observer(lat, lon), date)
        return s["sunrise"].timestamp(), s["sunset"].timestamp()
    except ValueError:  # the sun does not rise or set that day: judge by the photocell alone
        return day * 86400.0, day * 86400.0 + 86400.0


def daylight(t: float, lat: float, lon: float, margin_s: float) -> bool:
    """Whether the astronomical clock says it is day at ``t`` (dawn and dusk margins excluded)."""
    rise, sets = _sun(int(t // 86400), round(lat, 2), round(lon, 2))
    return rise + margin_s < t < sets - margin_s


def _bucket(level: float) -> str:
    return str(round(level / 10.0) * 10)


class LampDetector:
    """The lamp rules, run on one lamp's readings; ``state`` is the lamp's memory (JSON, kept in SQLite)."""

    detector = "lamp"

    def __init__(self, rules: LampRules, utc_offset_s: float = 0.0) -> None:
        self.rules = rules
        self.offset = utc_offset_s

    def observe(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float]) -> list[Flag]:
        """Judge one reading (engineering values by register name); returns the flags and reports it raises."""
        out: list[Flag] = []
        night = night_of(t, self.offset)
        current = state.get("night")
        if current is not None and night != current:
            out += self._close_night(node, state, t)
        if state.get("night") != night:
            self._open_night(state, night, v)
        power = float(v.get("power", 0.0))
        lit = power > LIT_W
        level = float(v.get("level_actual", 0.0))
        target = float(v.get("level_target", level))
        if lit and abs(level - target) < 1.0 and level > 0:
            sums = state["sums"].setdefault(_bucket(level), [0.0, 0.0, 0])
            sums[0] += power
            sums[1] += float(v.get("power_factor", 0.0))
            sums[2] += 1
        if lit:
            state["lit_temp"][0] += float(v.get("temperature", 0.0))
            state["lit_temp"][1] += 1
        state["last"] = [t, float(v.get("energy", 0.0)), float(v.get("burn_time", 0.0)),
                         float(v.get("switch_ons", 0.0)), float(v.get("rated_power", 60.0))]
        rules = self.rules
        if lit and not state.get("was_lit", lit):
            state["relit"] = state.get("relit", 0) + 1
        state["was_lit"] = lit
        if rules.cycling.enabled:
            out += self._cycling(node, state, t, v)
        if rules.day_burner.enabled:
            out += self._day_burner(node, state, t, v, lit, power)
        if rules.commands.enabled:
            out += self._commands(node, state, t, v, lit, power, level, target)
        return out

    # -- nights ------------------------------------------------------------------------------------------------

    def _open_night(self, state: dict[str, Any], night: int, v: Mapping[str, float]) -> None:
        state["night"] = night
        state["start"] = [float(v.get("energy", 0.0)), float(v.get("burn_time", 0.0)),
                          float(v.get("switch_ons", 0.0))]
        state["sums"] = {}
        state["lit_temp"] = [0.0, 0]
        if state.get("cycled") == "night":
            state["cycled"] = "flagged"  # flagged last night: stays so while the lamp keeps cycling
        elif state.get("cycled") == "flagged":
            state.pop("cycled")  # a quiet night: a new episode may be flagged again
        state["relit"] = 0

    def _close_night(self, node: str, state: dict[str, Any], now: float) -> list[Flag]:
        out: list[Flag] = []
        last = state.get("last")
        if last is None:
            return out
        t_last, energy, burn, switch_ons, rated = last
        e0, b0, s0 = state["start"]
        burn_h = max(0.0, burn - b0) / 3600.0
        if self.rules.driver.enabled:
            out += self._driver(node, state, t_last)
        if self.rules.energy.enabled and burn_h > 0:
            used = max(0.0, energy - e0)
            full = rated * burn_h
            saved = full - used
            share = saved / full if full > 0 else 0.0
            out.append(Flag(node, "lamp.energy_saved", t_last, full, saved,
                            ((t_last, used),),
                            f"night {state['night']}: {used:.0f} Wh used over {burn_h:.2f} h lit, "
                            f"{full:.0f} Wh at the full {rated:.0f} W: {saved:.0f} Wh ({share:.1%}) saved",
                            REPORT, (("burn_h", burn_h), ("full_wh", full), ("night", float(state["night"])),
                                     ("saved_wh", saved), ("share", share), ("used_wh", used))))
        if self.rules.life.enabled:
            out += self._life(node, state, t_last, burn_h, max(0.0, switch_ons - s0), burn)
        return out

    def _driver(self, node: str, state: dict[str, Any], t: float) -> list[Flag]:
        rule = self.rules.driver
        sums = state["sums"]
        base: dict[str, list[float]] = state.setdefault("baseline", {})
        learned = state.setdefault("learned", 0)
        if learned < rule.learn_nights:
            if sums:
                for b, (p, pf, n) in sums.items():
                    acc = base.setdefault(b, [0.0, 0.0, 0])
                    acc[0] += p
                    acc[1] += pf
                    acc[2] += n
                state["learned"] = learned + 1
            return []
        # The night's weighted mean ratio over the levels that have a baseline.
        num = den = pf_drop = 0.0
        worst: tuple[str, float, float] | None = None
        for b, (p, pf, n) in sums.items():
            ref = base.get(b)
            if n < MIN_SAMPLES or ref is None or ref[2] < MIN_SAMPLES:
                continue
            ref_p, ref_pf = ref[0] / ref[2], ref[1] / ref[2]
            num += (p / n) / ref_p * n
            den += n
            pf_drop = max(pf_drop, ref_pf - pf / n)
            if worst is None or n > int(sums[worst[0]][2]):
                worst = (b, ref_p, p / n)
        if not den or worst is None:
            return []
        ratio = num / den
        history = state.setdefault("ratios", [])
        history.append([t, round(ratio, 5)])
        del history[:-HISTORY]
        drifted = abs(ratio - 1.0) > rule.drift
        dropped = pf_drop > rule.pf_drop
        if not (drifted or dropped):
            state.pop("drift_flagged", None)
            return []
        if state.get("drift_flagged"):
            return []
        state["drift_flagged"] = True
        b, ref_p, now_p = worst
        why = f"power at {b} % {now_p:.1f} W against {ref_p:.1f} W learned ({ratio - 1.0:+.1%} over the night)"
        if dropped:
            why += f"; power factor {pf_drop:.3f} below its baseline"
        return [Flag(node, "lamp.driver_drift", t, ref_p, now_p, tuple((a, r) for a, r in history), why)]

    def _life(self, node: str, state: dict[str, Any], t: float, burn_h: float, switches: float,
              burn_total_s: float) -> list[Flag]:
        rule = self.rules.life
        n_temp, count = state["lit_temp"]
        temp = n_temp / count if count else rule.rated_temperature
        if "wear_h" not in state:  # hours burnt before the gateway knew the lamp count at the rated temperature
            state["wear_h"] = max(0.0, burn_total_s / 3600.0 - burn_h)
        factor = 2.0 ** ((temp - rule.rated_temperature) / 10.0)
        state["wear_h"] += burn_h * factor + switches * rule.hours_per_switch_on
        left = max(0.0, rule.rated_hours - state["wear_h"])
        return [Flag(node, "lamp.life", t, rule.rated_hours, left, ((t, temp),),
                     f"{left:.0f} h of {rule.rated_hours:.0f} h left: {burn_h:.2f} h lit at {temp:.1f} degC "
                     f"(x{factor:.2f} wear), {switches:.0f} switch-ons this night",
                     REPORT, (("burn_h", burn_h), ("switch_ons", switches), ("temperature", temp),
                              ("wear_h", state["wear_h"])))]

    # -- as readings come --------------------------------------------------------------------------------------

    def _cycling(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float]) -> list[Flag]:
        # The node counts relay closures; a driver that cuts out behind a closed relay shows in the power.
        count = max(float(v.get("switch_ons", 0.0)) - state["start"][2], float(state.get("relit", 0)))
        limit = self.rules.cycling.switch_ons
        if count < limit:
            return []
        if state.get("cycled"):
            state["cycled"] = "night"
            return []
        state["cycled"] = "night"
        return [Flag(node, "lamp.cycling", t, 1.0, count, ((t, count),),
                     f"{count:.0f} switch-ons since the night began (a lamp lights once or twice a night; "
                     f"limit {limit})")]

    def _day_burner(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float], lit: bool,
                    power: float) -> list[Flag]:
        rule = self.rules.day_burner
        lux = float(v.get("lux", 0.0))
        day = lux >= rule.daylight_lux and daylight(t, float(v.get("latitude", 0.0)), float(v.get("longitude", 0.0)),
                                                    rule.margin_minutes * 60.0)
        if not (lit and day):
            state.pop("day_lit", None)
            return []
        since = state.setdefault("day_lit", [t, power, lux])
        today = int(t // 86400)
        if t - since[0] < rule.minutes * 60.0 or state.get("day_flagged") == today:
            return []
        state["day_flagged"] = today
        return [Flag(node, "lamp.day_burner", t, 0.0, power, ((since[0], since[1]), (t, power)),
                     f"lit ({power:.1f} W) for {(t - since[0]) / 60:.0f} min in daylight: photocell {lux:.0f} lx, "
                     "sun up by the astronomical clock")]

    def _commands(self, node: str, state: dict[str, Any], t: float, v: Mapping[str, float], lit: bool,
                  power: float, level: float, target: float) -> list[Flag]:
        rule = self.rules.commands
        relay = bool(v.get("relay", 1))
        asked_lit = relay and target > 0
        problem = ""
        if asked_lit != lit:
            problem = f"asked {'on' if asked_lit else 'off'} (relay {int(relay)}, level {target:.0f} %), " \
                      f"drawing {power:.1f} W"
        elif lit and abs(level - target) > rule.level_tolerance:
            problem = f"asked {target:.0f} %, at {level:.0f} %"
        elif lit:
            ref = state.get("baseline", {}).get(_bucket(target))
            if state.get("learned", 0) >= self.rules.driver.learn_nights and ref and ref[2] >= MIN_SAMPLES:
                expected = ref[0] / ref[2]
                if abs(power - expected) > rule.level_tolerance / 100.0 * max(expected, LIT_W) * POWER_SLACK:
                    problem = f"asked {target:.0f} % ({expected:.1f} W learned), drawing {power:.1f} W"
        seen = state.get("disobey")
        if not problem:
            if seen is not None and (not seen[3] or t - seen[4] >= rule.minutes * 60.0):
                state.pop("disobey")  # a flagged lamp must follow for as long before it may be flagged again
            elif seen is not None:
                seen[4] = min(seen[4], t)
            return []
        if seen is None:
            seen = state["disobey"] = [t, power, 0, False, float("inf")]
        seen[2] += 1
        seen[4] = float("inf")
        if t - seen[0] < rule.minutes * 60.0 or seen[3]:
            return []
        seen[3] = True
        return [Flag(node, "lamp.not_following", t, target, power, ((seen[0], seen[1]), (t, power)),
                     f"{problem}, for {(t - seen[0]) / 60:.0f} min ({seen[2]} polls) since {seen[0]:.0f}")]
