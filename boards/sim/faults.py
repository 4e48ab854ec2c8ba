"""Seeded fault injection for the virtual street's physics, with the ground truth recorded.

A :class:`FaultPlan` draws which nodes of a street get a fault, which kind
(among those of its role), when it starts and how strong it is: the same
draws for the same seed and nodes, on CPython and MicroPython. Every
draw is kept in :attr:`FaultPlan.truth` (what a detector is scored against) and
can be written as JSON.

Kinds, and what they do to the physics:

- ``driver_drift`` (lamp): ``LampPhysics.wear_per_day`` from the start: the
  driver draws more power for the same light, its power factor falls;
- ``cycling`` (lamp): ``LampPhysics.cycle_s``: a thermal cut-out drops the light
  again and again while the lamp should burn;
- ``day_burner`` (lamp): ``LampPhysics.welded``: the relay stays closed, the
  lamp burns through the day at the level it had at dawn;
- ``leak`` (meter): ``WaterPhysics`` ``leak_lph`` from ``leak_from`` (an
  evening);
- ``stuck_meter`` (meter): ``WaterPhysics`` ``stuck_from``;
- ``sensor_drift`` (env): ``WeatherPhysics`` ``drift_k_per_day`` from ``drift_from``;
- ``sensor_stuck`` (env): ``WeatherPhysics`` ``stuck_from``.
"""

import json

from .rng import hashed

KINDS = {
    "lamp": ("driver_drift", "cycling", "day_burner"),
    "meter": ("leak", "stuck_meter"),
    "env": ("sensor_drift", "sensor_stuck"),
}


class Fault:
    """One injected fault: ``node``, ``kind``, ``start`` (wall time, s) and its strength ``params`` (a dict)."""

    def __init__(self, node, kind, start, params):
        self.node = node
        self.kind = kind
        self.start = start
        self.params = params

    def settings(self):
        """The ``configure`` settings of a meter's water or an environment node's weather that inject it."""
        kind = self.kind
        p = self.params
        if kind == "leak":
            return {"leak_lph": p["lph"], "leak_from": self.start}
        if kind == "stuck_meter":
            return {"stuck_from": self.start}
        if kind == "sensor_drift":
            return {"drift_k_per_day": p["k_per_day"], "drift_from": self.start}
        if kind == "sensor_stuck":
            return {"stuck_from": self.start}
        return {}

    def apply_lamp(self, lamp):
        """Inject a lamp fault into a ``LampPhysics`` (call it at :attr:`start`)."""
        kind = self.kind
        if kind == "driver_drift":
            lamp.wear_per_day = self.params["per_day"]
        elif kind == "cycling":
            lamp.cycle_s = (self.params["on_s"], self.params["off_s"])
        elif kind == "day_burner":
            lamp.welded = True
            lamp.set_relay(True)

    def record(self):
        """The ground truth of this fault as a dict."""
        return {"node": self.node, "kind": self.kind, "start": self.start, "params": self.params}


class FaultPlan:
    """Which nodes fail, how and when.

    Of each role's nodes, ``share`` (rounded) get a fault, picked at random; the kinds of that role take turns
    among them, so every kind is tried; start and strength are drawn per fault.

    Args:
        seed: the draw's seed.
        t0: wall time (s) the simulated period starts, at a midnight.
        days: its length in days.
        share: the part of each role's nodes that get a fault (0 for a fault-free street).
        earliest_day: faults start on this day or later (the detectors learn the nodes' baselines before).
        latest_day: faults start on this day at the latest (so that they have time to show).
    """

    def __init__(self, seed, t0, days, share=0.25, earliest_day=3, latest_day=None):
        self.seed = seed
        self.t0 = t0
        self.days = days
        self.share = share
        self.earliest_day = earliest_day
        self.latest_day = days - 8 if latest_day is None else latest_day
        self.truth = []

    def draw(self, nodes):
        """``nodes`` as ``(node_id, role)`` pairs -> ``{node_id: Fault}`` for those that fail; kept in :attr:`truth`."""
        out = {}
        r = hashed(self.seed, 0)
        for role, kinds in KINDS.items():
            ids = [n for n, rl in nodes if rl == role]
            for i in range(len(ids) - 1, 0, -1):  # a seeded shuffle (Fisher-Yates)
                j = int(r.uniform(0, i + 1))
                ids[i], ids[j] = ids[j], ids[i]
            for k, node in enumerate(ids[: int(len(ids) * self.share + 0.5)]):
                fault = self._fault(node, kinds[k % len(kinds)], hashed(self.seed + 1, len(self.truth)))
                self.truth.append(fault)
                out[node] = fault
        return out

    def _fault(self, node, kind, r):
        day = self.earliest_day + int(r.uniform(0, self.latest_day - self.earliest_day + 1))
        hour = r.uniform(0.0, 24.0)
        params = {}
        if kind == "driver_drift":
            params["per_day"] = r.uniform(0.10, 0.20) / 7.0  # 10 % to 20 % a week
        elif kind == "cycling":
            params["on_s"] = r.uniform(900.0, 2400.0)
            params["off_s"] = r.uniform(600.0, 1200.0)
        elif kind == "day_burner":
            hour = r.uniform(0.0, 3.0)  # in the night: the lamp burns on into the next day
        elif kind == "leak":
            params["lph"] = r.uniform(2.0, 10.0)
            hour = 20.0 + r.uniform(0.0, 4.0)  # a pipe gives in the evening
        elif kind == "sensor_drift":
            params["k_per_day"] = r.uniform(0.5, 1.5)
        return Fault(node, kind, self.t0 + day * 86400.0 + hour * 3600.0, params)

    def dump(self, path):
        """Write the ground truth as JSON: seed, period and every fault drawn."""
        with open(path, "w") as f:
            json.dump({"seed": self.seed, "t0": self.t0, "days": self.days,
                       "faults": [fault.record() for fault in self.truth]}, f)
