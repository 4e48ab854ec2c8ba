"""``streetedge bench analytics`` in small: a short month of a small street, scored against its ground truth."""

from __future__ import annotations

from tools.bench_analytics import RULE_OF, energy_check, false_alarms, score
from tools.bench_analytics_street import simulate


def test_every_injected_fault_is_found_by_its_rule_and_nothing_else_is_flagged() -> None:
    month = simulate(lamps=3, meters=2, envs=4, days=11, seed=5, share=0.5)
    kinds = {f.kind for f in month.faults}
    assert len(month.faults) == 2 + 1 + 2 and len(kinds) >= 4
    for s in score(month):
        assert (s.found, s.right_nodes, s.flagged_nodes) == (s.faults, s.faults, s.faults), s
    flagged = {(f.node, f.rule) for f in month.flags if f.kind == "flag"}
    truth = {f.node: RULE_OF[f.kind] for f in month.faults}
    # Besides its own rule a fault may raise a related one (a stuck meter is also far from its profile;
    # a welded relay is also a lamp that does not follow its commands); a healthy node raises none.
    assert {node for node, _ in flagged} == set(truth)
    checked, gap, share = energy_check(month)
    assert checked >= 20 and gap < 2.0 and 0.15 < share < 0.4


def test_a_fault_free_week_raises_no_flag() -> None:
    month = simulate(lamps=3, meters=2, envs=4, days=7, seed=6, share=0.0, poll_s=600.0)
    assert month.faults == []
    assert false_alarms(month) == (0.0, {})
