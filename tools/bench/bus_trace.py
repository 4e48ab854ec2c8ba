"""Where an RS-485 line's time went, from the virtual bus's timestamped traffic (``tools.sim.bus --trace``).

The bus process stamps every chunk it reads from a drop and every frame it
hands on (``time.monotonic``, the clock every process of the machine shares),
so the silences between frames can be measured from outside both ends:
:func:`idle_time` finds, beyond the t3.5 each frame is owed, how late the lamps
answered, how late the gateway sent its next request and how late the bus
handed frames on. Given the gateway's own stamps (``WireClock.on_write``: when it
saw the answer's last bytes, when it wrote its next frame), the gateway's
lateness is split into the answer's way to the gateway (a pty's kernel worker,
the process's wake-up), the gateway's own time beyond t3.5, and the request's
way back to the bus.
"""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.transport.serial_timing import silence
from tools.sim.bus import BITS_PER_CHAR


def idle_time(trace: Path, baud: int, start: float, end: float,
              gateway: Sequence[tuple[float, float]] = ()) -> dict[str, float]:
    """Where the line was idle beyond the spec's silences, from the bus's timestamped traffic (``--trace``).

    Per frame in the window: ``node`` the time from a request's last byte to the
    answer's first beyond t3.5, ``gateway`` from an answer's last byte to the
    next request beyond t3.5, ``late`` how much later than its characters' time
    the bus delivered a frame's last byte; seconds in total, and the medians
    (``*_p50``) and 90th percentiles (``*_p90``) of the per-frame values.

    ``gateway``: the gateway's ``(heard, written)`` stamps in time order. Each
    gateway gap it explains adds ``to_gateway`` (the answer handed on by the bus
    until the gateway saw it), ``in_gateway`` (from then to its next frame's
    write, beyond t3.5) and ``to_bus`` (from that write until the bus read the
    frame's first byte), as medians and 90th percentiles, and ``explained``, how
    many gaps they cover.
    """
    t35 = silence(baud, BITS_PER_CHAR)
    char = BITS_PER_CHAR / baud
    frames: list[list[Any]] = []  # [who, first byte read, last byte delivered, bytes]
    with trace.open() as f:
        for line in f:
            t, kind, who, n = json.loads(line)
            if kind == "in":
                if frames and frames[-1][0] == who and frames[-1][2] is None:
                    frames[-1][3] += n
                else:
                    frames.append([who, t, None, n])
            else:
                for frame in reversed(frames):
                    if frame[0] == who:
                        frame[2] = t
                        break
    frames = [fr for fr in frames if fr[2] is not None and start <= fr[1] <= end]
    samples: dict[str, list[float]] = {"node": [], "gateway": [], "late": []}
    parts: dict[str, list[float]] = {"to_gateway": [], "in_gateway": [], "to_bus": []}
    written = [w for _, w in gateway]
    for before, after in itertools.pairwise(frames):
        gap = after[1] - before[2] - t35
        if before[0] == "master" and after[0] != "master":
            samples["node"].append(max(0.0, gap))
        elif before[0] != "master" and after[0] == "master":
            samples["gateway"].append(max(0.0, gap))
            i = bisect.bisect_right(written, after[1]) - 1  # the gateway's last write before the bus read it
            if i >= 0 and before[2] <= gateway[i][0] <= written[i]:  # ... after it saw this answer
                heard, wrote = gateway[i]
                parts["to_gateway"].append(heard - before[2])
                parts["in_gateway"].append(max(0.0, wrote - heard - t35))
                parts["to_bus"].append(after[1] - wrote)
    samples["late"] = [max(0.0, fr[2] - fr[1] - fr[3] * char) for fr in frames]
    out: dict[str, float] = {}
    for key, values in (samples | parts).items():
        ordered = sorted(values) or [0.0]
        out[key] = sum(values)
        out[f"{key}_p50"] = ordered[(len(ordered) - 1) // 2]
        out[f"{key}_p90"] = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    out["explained"] = len(parts["to_gateway"])
    out["gateway_gaps"] = len(samples["gateway"])
    return out


def idle_line(idle: dict[str, float], elapsed: float) -> str:
    """The report's sentence on where the line's time went (empty without a trace)."""
    if not idle:
        return ""
    text = (
        "Where the rest of the line's time went (the bus's timestamped traffic, beyond the t3.5 after each "
        f"frame): the lamps answered {idle['node_p50'] * 1000:.2f} ms later than t3.5 allows at the median "
        f"({idle['node_p90'] * 1000:.2f} ms at the 90th percentile; {idle['node'] / elapsed:.0%} of the time in "
        f"all), the gateway sent its next request {idle['gateway_p50'] * 1000:.2f} ms late "
        f"({idle['gateway_p90'] * 1000:.2f} ms; {idle['gateway'] / elapsed:.0%}), and the bus process delivered a "
        f"frame's last byte {idle['late_p50'] * 1000:.2f} ms after its characters' time "
        f"({idle['late_p90'] * 1000:.2f} ms; {idle['late'] / elapsed:.0%})."
    )
    if idle.get("explained"):
        def ms(key: str) -> str:
            return f"{idle[f'{key}_p50'] * 1000:.2f} / {idle[f'{key}_p90'] * 1000:.2f} ms"
        text += (
            f" The gateway's lateness in parts (median / 90th percentile, from its own stamps, "
            f"{idle['explained']:.0f} of {idle['gateway_gaps']:.0f} gaps): the answer's way from the bus to the "
            f"gateway's event loop (the pty's kernel worker, the process's wake-up) {ms('to_gateway')}, the "
            f"gateway's own time beyond t3.5 {ms('in_gateway')}, the request's way back to the bus "
            f"{ms('to_bus')}."
        )
    return text
