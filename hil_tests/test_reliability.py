"""Nothing lost: the gateway killed, the broker gone, a noisy bus, nodes losing power, the disk budget full.

Each test builds its own rig (tools/reliability.py): a virtual street of real firmware nodes, a restartable
Mosquitto, the gateway as a process and an independent observer. What the gateway committed to its outbox
(logged by a trigger in the same transactions) must reach the observer, except what the disk budget dropped,
and that must be reported upstream. The default run uses reduced sizes; ``-m slow`` the full ones (SIGKILL
x20, the broker down for 90 s); ``streetedge bench reliability`` records the full figures in
docs/reliability.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.reliability import Figures, run_scenario


def check(figures: Figures) -> None:
    assert figures.produced > 0, "nothing was produced: the scenario tested nothing"
    assert figures.lost == 0, f"{figures.lost} committed records never arrived, e.g. {figures.missing[:10]}"
    assert figures.notes.get("left in outbox", 0) == 0


@pytest.mark.parametrize("name", ["sigkill", "broker", "noise", "nodes"])
def test_nothing_is_lost(name: str, tmp_path: Path) -> None:
    figures = run_scenario(name, tmp_path)
    check(figures)
    assert figures.dropped == 0


def test_a_full_disk_budget_drops_the_oldest_counts_them_and_reports_them(tmp_path: Path) -> None:
    figures = run_scenario("budget", tmp_path)
    check(figures)
    assert figures.dropped > 0, "the budget was never reached: the scenario tested nothing"
    assert figures.dropped_reported == figures.dropped
    assert figures.notes["gateway alive when full"] is True


@pytest.mark.slow
@pytest.mark.parametrize("name", ["sigkill", "broker", "noise", "nodes", "budget"])
def test_nothing_is_lost_at_full_size(name: str, tmp_path: Path) -> None:
    figures = run_scenario(name, tmp_path, full=True)
    check(figures)
    if name == "budget":
        assert figures.dropped > 0 and figures.dropped_reported == figures.dropped
    else:
        assert figures.dropped == 0
