"""Read plans decode exactly as the register map does, for every role."""

from __future__ import annotations

import math
import random

import pytest

from gateway.contracts import BIT_TABLES, INPUT, ROLES, TABLES, load_role
from gateway.polling.read_plan import PlanError, ReadPlan, plan_for
from gateway.profiles import parse_profile


@pytest.mark.parametrize("role", ROLES)
def test_plan_matches_register_map_decode(role: str) -> None:
    """Random words: the plan's raw values equal RegisterMap.decode's, in map order."""
    regmap = load_role(role)
    plan = ReadPlan(regmap)
    rng = random.Random(7)
    for _ in range(50):
        blocks = {}
        expected = []
        for table in TABLES:
            spans = regmap.blocks(table)
            if not spans:
                continue
            start = spans[0][0]
            count = sum(c for _, c in spans)
            top = 2 if table in BIT_TABLES else 0x10000  # a bit table's words are its bits
            words = [rng.randrange(top) for _ in range(count)]
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


LOW_FIRST = """
[device]
name = "swapped"
manufacturer = "Test"
model = "T1"
datasheet = "none: a test device"

[[register]]
name = "energy"
function = "input"
address = 0
type = "u32"
word_order = "low_first"

[[register]]
name = "power"
function = "input"
address = 2
type = "float32"
word_order = "low_first"

[[register]]
name = "count"
function = "input"
address = 4
type = "s32"
"""


def test_low_word_first_values_decode_like_the_map() -> None:
    """A table with low-word-first values: the plan gives what the map gives, and the numbers the words carry."""
    regmap = parse_profile(LOW_FIRST, source="swapped.toml").regmap
    words = [0x5678, 0x1234, 0x0000, 0x4348, 0xFFFF, 0xFFFE]  # 0x12345678; 200.0 as f32 0x43480000; -2 high first
    got = {reg.name: raw for reg, raw in ReadPlan(regmap).decode({INPUT: (0, words)})}
    assert got == {"energy": 0x12345678, "power": 200.0, "count": -2}
    assert got == {reg.name: raw for reg, raw in regmap.decode(INPUT, 0, words)}
    plan = ReadPlan(regmap)
    assert plan.decode_bytes(INPUT, bytes.fromhex("5678 1234 0000 4348 ffff fffe")) == (0x12345678, 200.0, -2)
