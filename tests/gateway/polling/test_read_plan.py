"""Read plans decode exactly as the register map does, for every role."""

from __future__ import annotations

import math
import random

import pytest

from gateway.contracts import HOLDING, INPUT, ROLES, load_role
from gateway.polling.read_plan import PlanError, ReadPlan, plan_for


@pytest.mark.parametrize("role", ROLES)
def test_plan_matches_register_map_decode(role: str) -> None:
    """Random words: the plan's raw values equal RegisterMap.decode's, in map order."""
    regmap = load_role(role)
    plan = ReadPlan(regmap)
    rng = random.Random(7)
    for _ in range(50):
        blocks = {}
        expected = []
        for table in (HOLDING, INPUT):
            spans = regmap.blocks(table)
            if not spans:
                continue
            start = spans[0][0]
            count = sum(c for _, c in spans)
            words = [rng.randrange(0x10000) for _ in range(count)]
            blocks[table] = (start, words)
            expected += regmap.decode(table, start, words)
        got = plan.decode(blocks)
        order = {id(r): i for i, r in enumerate(regmap.registers)}
        expected.sort(key=lambda pair: order[id(pair[0])])
        assert [r.name for r, _ in got] == [r.name for r, _ in expected]
        for (_, a), (_, b) in zip(got, expected, strict=True):
            assert a == b or (math.isnan(a) and math.isnan(b))  # random F32 words may be NaN


def test_wrong_word_count_is_refused() -> None:
    """Words that do not fit the plan raise PlanError, never a silent misread."""
    plan = plan_for(load_role("sdm630"))
    with pytest.raises(PlanError, match="do not fit"):
        plan.decode({INPUT: (0, [0] * 79)})


def test_plan_is_cached_per_role() -> None:
    """plan_for returns the same plan for the same map."""
    regmap = load_role("lamp")
    assert plan_for(regmap) is plan_for(regmap)
