"""``streetedge bench reliability``: the loss scenarios at full size, figures into docs/reliability.md.

Runs the scenarios of :mod:`tools.reliability` (SIGKILL x20, the broker down for
90 s, a noisy bus, node power cuts, the disk budget exhausted) and the gateway's
own power cuts (:mod:`tools.power_loss`, once with ``synchronous = FULL`` and
once with ``NORMAL``), each on a fresh virtual street, and records one table row
per run.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from tools.bench import record
from tools.power_loss import check_power_loss, run_power_loss
from tools.reliability import SCENARIOS, Figures, run_scenario

POWER_LOSS = "power-loss"
"""The gateway's power cuts: one run per synchronous mode."""

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
    """Run the scenarios, print the table, and with ``write_docs`` record it.

    Exit status 1 if anything was lost (with ``synchronous = NORMAL``: if a promise that mode keeps was broken).
    """
    rows = []
    failed = False
    runs = [(name, sync) for name in names for sync in (("FULL", "NORMAL") if name == POWER_LOSS else ("",))]
    for name, sync in runs:
        with tempfile.TemporaryDirectory(prefix=f"streetedge-rel-{name}-") as work:
            started = time.monotonic()
            if sync:
                figures = run_power_loss(Path(work), synchronous=sync, full=full, seed=seed)
                try:  # NORMAL may lose the tail by design: its figures are the report
                    check_power_loss(figures, strict=sync == "FULL")
                except AssertionError as exc:
                    failed = True
                    print(f"{figures.scenario}: {exc}", flush=True)
            else:
                figures = run_scenario(name, Path(work), full=full, seed=seed)
                failed = failed or figures.lost > 0
            figures.notes["run s"] = round(time.monotonic() - started)
            print(figures.row(), flush=True)
            rows.append(figures)
    # The gateway's power cuts have a section (and markers) of their own, so each part can be rerun alone.
    for part, heading, chosen in (
        ("bench reliability", "Delivery: nothing lost", [f for f in rows if f.notes.get("cuts") is None]),
        ("bench reliability power-loss", "Gateway power cuts", [f for f in rows if f.notes.get("cuts") is not None]),
    ):
        if not chosen:
            continue
        text = table(chosen, full)
        print(text)
        if write_docs:
            scenarios = "".join(f" --scenario {n}" for n in names) if names != ALL else ""
            command = "streetedge bench reliability" + scenarios + ("" if full else " --reduced") + " --write-docs"
            record(part, heading, command, text, docs=DOCS)
            print(f"recorded in {DOCS}")
    return 1 if failed else 0


ALL = [*SCENARIOS, POWER_LOSS]
"""Every scenario, in the order they run."""
