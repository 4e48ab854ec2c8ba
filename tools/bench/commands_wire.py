"""A one-lamp command's bus stage split in two, from the virtual bus's timestamped traffic (``--trace``).

The gateway times a command's ``bus`` stage as a whole: from asking for the
line to the write's answer. The bus process stamps every frame (when it read
a drop's first bytes, when it delivered the last), on the same monotonic
clock as the bench. For each one-lamp command the bench knows when it
published the command and when the result came; in that window the master's
write is its one frame that is not an 8-byte read (polls and read-backs are
reads of 8 bytes; function 16 takes 9 + 2 per register, function 23 with its
read-back 11 + 2), and the frame after it is the lamp's answer. So:

- the transaction: from the write's first byte on the line to its answer's
  last byte delivered to the gateway (the request's characters, the lamp's
  t3.5 and answer, the answer's characters);
- the rest of the bus stage: waiting for the line (a poll transaction in
  progress, the t3.5 after it) and the gateway's own handling of the request
  and the answer (pymodbus, the answer's decoding), which the trace cannot tell
  apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

READ_FRAME = 8
"""Bytes of a read request (functions 1-4): what polls and read-backs send."""


@dataclass
class Frame:
    """One frame on the virtual bus: who sent it, when the bus read its first bytes and delivered its last."""

    who: str
    start: float
    end: float | None
    size: int


def frames(trace: Path) -> list[Frame]:
    """The frames of a bus trace (a sender's chunks up to a delivery are one frame), in order."""
    out: list[Frame] = []
    with trace.open() as f:
        for line in f:
            t, kind, who, n = json.loads(line)
            if kind == "in":
                if out and out[-1].who == who and out[-1].end is None:
                    out[-1].size += n
                else:
                    out.append(Frame(who, t, None, n))
                continue
            for frame in reversed(out):
                if frame.who == who:
                    frame.end = t
                    break
    return [f for f in out if f.end is not None]


def write_transactions(trace: Path, windows: list[tuple[float, float]]) -> list[float | None]:
    """Per ``(published, result)`` window: seconds from the master's write to its answer's end; None if not found."""
    found: list[float | None] = []
    on_line = frames(trace)
    for begin, end in windows:
        took = None
        for i, frame in enumerate(on_line):
            if frame.who != "master" or frame.size == READ_FRAME or not begin <= frame.start <= end:
                continue
            answer = next((f for f in on_line[i + 1:] if f.who != "master"), None)
            if answer is not None and answer.end is not None and answer.end <= end:
                took = answer.end - frame.start
            break
        found.append(took)
    return found


def split_bus_stage(trace: Path, stages: list[dict[str, float]]) -> None:
    """Add ``wire`` (the write's transaction) and ``line`` (the rest of ``bus``) in ms to each one-lamp stage map.

    Each map carries ``at`` and ``until`` (monotonic seconds: published, result
    received); maps whose write is not found in the trace are left as they are.
    """
    windows = [(s["at"], s["until"]) for s in stages]
    for stage, took in zip(stages, write_transactions(trace, windows), strict=True):
        if took is not None and "bus" in stage:
            stage["wire"] = took * 1000
            stage["line"] = max(0.0, float(stage["bus"]) - took * 1000)
