"""What the detectors say: a :class:`Flag` (a suspected fault) or a daily :class:`Flag` report, and its wire form.

A flag is explainable on its own: the rule that fired, the node, the baseline
the node's own history gave, the value observed against it, and the evidence
(the readings, with their times, that made the case). It travels as a node
event (``<root>/event/<node>``) in both data profiles, so a consumer that reads
node alarms reads flags too: a SenML pack whose first record is ``flag`` (or
``report`` for the daily figures) with the rule as its string value.

In the outbox a flag is an event record whose seq lies above every node's own
event seq (:data:`FLAG_SEQ_BASE`), so ``(node, seq)`` stays unique upstream.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import cbor2

__all__ = ["FLAG", "FLAG_SEQ_BASE", "REPORT", "Flag", "is_flag_seq", "senml_records"]

FLAG_SEQ_BASE = 1 << 40
"""First seq of analytics records: node event seqs are 32-bit, so the two never meet."""
FLAG = "flag"
"""Kind of a suspected fault."""
REPORT = "report"
"""Kind of a periodic figure (energy saved, remaining life): not a fault."""


def is_flag_seq(seq: int) -> bool:
    """Whether an event record's ``seq`` belongs to an analytics record rather than to the node's event log."""
    return seq >= FLAG_SEQ_BASE


class Flag(NamedTuple):
    """One analytics record about one node.

    Attributes:
        node: the node id (or the street, for street-wide reports).
        rule: the rule that fired, e.g. ``lamp.driver_drift`` or ``water.night_flow``.
        time: when it fired (epoch seconds).
        baseline: the node's learned value the rule compares against (its unit is the rule's).
        observed: the value that broke it (or the figure reported).
        evidence: ``(time, value)`` pairs that made the case, oldest first.
        detail: one sentence a person can read.
        kind: :data:`FLAG` or :data:`REPORT`.
        extra: further named figures (reports: energy used, at full power, share saved ...).
    """

    node: str
    rule: str
    time: float
    baseline: float
    observed: float
    evidence: tuple[tuple[float, float], ...]
    detail: str
    kind: str = FLAG
    extra: tuple[tuple[str, float], ...] = ()

    def payload(self) -> bytes:
        """What the outbox keeps: a CBOR map (the event record's payload)."""
        return cbor2.dumps({
            "k": self.kind, "r": self.rule, "t": self.time, "b": self.baseline, "o": self.observed,
            "e": [list(p) for p in self.evidence], "d": self.detail, "x": dict(self.extra),
        })

    @classmethod
    def from_payload(cls, node: str, payload: bytes) -> Flag:
        """The flag an outbox payload holds (ValueError if it is not one)."""
        data = cbor2.loads(payload)
        if not isinstance(data, dict) or "r" not in data:
            raise ValueError(f"not an analytics record: {payload[:16].hex()}")
        return cls(node, data["r"], data["t"], data["b"], data["o"],
                   tuple((float(t), float(v)) for t, v in data["e"]), data["d"], data["k"],
                   tuple(sorted(data.get("x", {}).items())))


def senml_records(flag: Flag, seq: int) -> list[dict[str, Any]]:
    """The SenML records of one flag (base name added by the caller): name, seq, baseline, observed, evidence."""
    t = flag.time
    records: list[dict[str, Any]] = [
        {"n": flag.kind, "t": t, "vs": flag.rule},
        {"n": f"{flag.kind}_seq", "t": t, "v": seq},
        {"n": f"{flag.kind}_baseline", "t": t, "v": flag.baseline},
        {"n": f"{flag.kind}_observed", "t": t, "v": flag.observed},
        {"n": f"{flag.kind}_detail", "t": t, "vs": flag.detail},
    ]
    records += [{"n": f"{flag.kind}_{name}", "t": t, "v": value} for name, value in flag.extra]
    records += [{"n": f"{flag.kind}_evidence", "t": et, "v": ev} for et, ev in flag.evidence]
    return records
