"""A roll-out's steps as events of its nodes: what travels on ``<root>/event/<node>`` beside the node's own events.

Each step of a node's update (:mod:`gateway.update.rollout_node`) is stored in
the outbox as an event record of that node, so it reaches the broker through
the same durable path as the node's event log and analytics flags, in either
data profile: a SenML pack whose first record is ``update`` with the step as
its string value::

    [{"bn": "urn:dev:streetedge:s:lamp-2:", "n": "update", "t": 1767225600.5, "vs": "committed"},
     {"n": "update_seq", "t": 1767225600.5, "v": 281474976710714},
     {"n": "update_command", "t": 1767225600.5, "vs": "c-9"},
     {"n": "update_package", "t": 1767225600.5, "vs": "<image sha256, hex>"},
     {"n": "update_detail", "t": 1767225600.5, "vs": "..."}]     # failed, rolled_back: why

Steps: :data:`STEPS`. The seq is :data:`ROLLOUT_SEQ_BASE` plus eight times
the roll-out's number in the gateway's roll-out store plus the step's index,
so it lies above every node event seq and every analytics seq, and a step
recorded again after a gateway crash carries the same seq: ``(node, seq)``
lets anyone upstream drop the duplicate, as for every record.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import cbor2

__all__ = ["ROLLOUT_SEQ_BASE", "STEPS", "UPDATE", "RolloutStep", "is_rollout_seq", "senml_records", "step_of"]

ROLLOUT_SEQ_BASE = 1 << 48
"""First seq of roll-out steps: above node event seqs (32-bit) and analytics records (from 2**40)."""
UPDATE = "update"
"""Name of a roll-out step's first SenML record."""
STEPS = ("started", "transferred", "committed", "confirmed", "failed", "rolled_back")
"""The steps of one node's update, by index."""
_STATE_STEPS = {"started": "started", "transferred": "transferred", "committing": "committed",
                "confirmed": "confirmed", "failed": "failed", "rolled_back": "rolled_back"}


def is_rollout_seq(seq: int) -> bool:
    """Whether an event record's ``seq`` belongs to a roll-out step."""
    return seq >= ROLLOUT_SEQ_BASE


def step_of(state: str) -> str | None:
    """The event a node state is announced with (None: ``pending``, ``skipped``: no event)."""
    return _STATE_STEPS.get(state)


class RolloutStep(NamedTuple):
    """One step of one node's update, numbered, as the outbox stores it (``Storable``)."""

    seq: int
    time: float
    command: str
    package: str
    step: str
    detail: str

    @classmethod
    def of(cls, rollout: int, step: str, *, time: float, command: str, package: str, detail: str) -> RolloutStep:
        """Step ``step`` of roll-out number ``rollout`` (its seq follows from both)."""
        return cls(ROLLOUT_SEQ_BASE + rollout * 8 + STEPS.index(step), time, command, package, step, detail)

    def payload(self) -> bytes:
        """The CBOR map the outbox keeps."""
        return cbor2.dumps({"k": UPDATE, "s": self.step, "c": self.command, "p": self.package, "d": self.detail,
                            "t": self.time})

    @classmethod
    def from_payload(cls, seq: int, payload: bytes) -> RolloutStep:
        """The step an outbox payload holds (ValueError if it is not one)."""
        try:
            data = cbor2.loads(payload)
        except cbor2.CBORDecodeError:
            data = None
        if not isinstance(data, dict) or data.get("k") != UPDATE or data.get("s") not in STEPS:
            raise ValueError(f"not a roll-out step: {payload[:16].hex()}")
        return cls(seq, float(data["t"]), str(data["c"]), str(data["p"]), data["s"], str(data["d"]))


def senml_records(step: RolloutStep) -> list[dict[str, Any]]:
    """The SenML records of one step (base name added by the caller)."""
    t = step.time
    records: list[dict[str, Any]] = [
        {"n": UPDATE, "t": t, "vs": step.step},
        {"n": f"{UPDATE}_seq", "t": t, "v": step.seq},
        {"n": f"{UPDATE}_command", "t": t, "vs": step.command},
        {"n": f"{UPDATE}_package", "t": t, "vs": step.package},
    ]
    if step.detail:
        records.append({"n": f"{UPDATE}_detail", "t": t, "vs": step.detail})
    return records
