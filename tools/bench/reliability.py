"""``streetedge bench reliability``: the loss scenarios at full size, figures into docs/reliability.md.

Runs the scenarios of :mod:`tools.reliability` (SIGKILL x20, the broker down for
90 s, a noisy bus, node power cuts, the disk budget exhausted), each on a fresh
virtual street, and records one table row per scenario.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tools.bench import record
from tools.reliability import SCENARIOS, Figures, run_scenario

DOCS = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def table(rows: list[Figures], full: bool) -> str:
    """The results as a Markdown table with its legend."""
    lines = [
        f"{'Full' if full else 'Reduced'} sizes; {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores (shared). "
        "4 lamp nodes (real firmware, unix port, sampling every 100 ms) polled every 50 ms on one virtual "
        "RS-485 bus; compact profile, 0.5 s batches; Mosquitto; an independent paho observer.",
        "",
        "| scenario | committed to the outbox (readings + node events) | delivered | lost | duplicates delivered "
        "| dropped by the budget | notes |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    lines += [f.row() for f in rows]
    return "\n".join(lines)


def run_reliability_bench(names: list[str], *, full: bool = True, write_docs: bool = False, seed: int = 1) -> int:
    """Run the scenarios, print the table, and with ``write_docs`` record it; exit status 1 if anything was lost."""
    rows = []
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"streetedge-rel-{name}-") as work:
            started = time.monotonic()
            figures = run_scenario(name, Path(work), full=full, seed=seed)
            figures.notes["run s"] = round(time.monotonic() - started)
            print(figures.row(), flush=True)
            rows.append(figures)
    text = table(rows, full)
    print(text)
    if write_docs:
        command = "streetedge bench reliability" + ("" if full else " --reduced") + " --write-docs"
        record("bench reliability", "Delivery: nothing lost", command, text, docs=DOCS)
        print(f"recorded in {DOCS}")
    return 1 if any(f.lost for f in rows) else 0


ALL = list(SCENARIOS)
"""Every scenario, in the order they run."""
