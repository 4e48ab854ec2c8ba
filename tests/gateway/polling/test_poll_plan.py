"""Poll plans: classes from the role tables, merged requests with the wire's break-even, decoding, node memory."""

from __future__ import annotations

import math
import random

import pytest

from gateway.contracts import BIT_TABLES, FIRMWARE_ROLES, HOLDING, INPUT, ROLES, load_role
from gateway.polling.poll_plan import (
    COUNTER,
    EVERYTHING,
    IDENTITY,
    MEASURE,
    SETTING,
    LineCost,
    NodePolls,
    PollPlan,
    PollPlanError,
    mirrors,
    plan_requests,
    poll_classes,
)

LAMP = load_role("lamp")


def test_lamp_classes_come_from_the_role_and_common_tables() -> None:
    classes = poll_classes(LAMP)
    assert classes["power"] == MEASURE and classes["dim_level"] == MEASURE
    assert classes["energy"] == COUNTER and classes["clock"] == COUNTER
    assert classes["latitude"] == SETTING and classes["tz_offset"] == SETTING
    assert classes["firmware"] == IDENTITY and classes["boots"] == IDENTITY
    assert classes["settings_changes"] == COUNTER and classes["uptime"] == MEASURE  # the lamp's own uptime
    assert poll_classes(load_role("meter"))["uptime"] == COUNTER  # the common one, outside the role's block


@pytest.mark.parametrize("role", FIRMWARE_ROLES)
def test_every_declared_name_is_a_register_of_some_role(role: str) -> None:
    """A name in COUNTERS/SETTINGS/IDENTITY that no map has would be a silent typo."""
    import importlib

    module = importlib.import_module(f"protocols.roles.{role}")
    common = importlib.import_module("protocols.roles.common")
    names = {reg.name for reg in load_role(role).registers}
    for attr in ("COUNTERS", "SETTINGS", "IDENTITY", "MEASURES"):
        assert set(getattr(module, attr, "").split()) <= names, (role, attr)
    common_names = {row[0] for row in common.COMMON}
    for attr in ("COUNTERS", "SETTINGS", "IDENTITY"):
        assert set(getattr(common, attr).split()) <= common_names


def test_break_even_follows_the_bit_rate() -> None:
    """At 19200 8E1 a request costs 13 characters + 2 x t3.5 (3.5 characters): 10 words; faster lines gain from t3.5."""
    slow = LineCost(19200)
    assert slow.break_even() == 10  # (13 + 7) characters / 2 per word
    fast = LineCost(115200)
    # t3.5 is fixed at 1.75 ms above 19200 bit/s: a request costs far more words there.
    assert fast.break_even() == int((13 * 11 / 115200 + 2 * 0.00175) / (2 * 11 / 115200))
    assert fast.break_even() > slow.break_even()
    assert LineCost(19200, turnaround=0.01).break_even() > slow.break_even()


def test_gaps_are_bridged_only_below_the_break_even() -> None:
    cost = LineCost(19200)  # break-even 10 words
    regs = [LAMP["dim_level"], LAMP["relay"], LAMP["rated_power"]]  # holding 0, 1 and 14: a gap of 12
    assert plan_requests(regs, cost) == [(HOLDING, 0, 2), (HOLDING, 14, 1)]
    regs = [LAMP["seq"], LAMP["temperature"]]  # input 0..1 and 7: a gap of 5
    assert plan_requests(regs, cost) == [(INPUT, 0, 8)]


def test_a_request_never_asks_for_more_than_125_registers() -> None:
    cost = LineCost(None)  # TCP bridges wide gaps
    regs = [reg for reg in LAMP.registers if reg.table == INPUT]
    for _, _, count in plan_requests(regs, cost, max_words=20):
        assert count <= 20
    everything = plan_requests(LAMP.registers, LineCost(None))
    assert all(count <= 125 for _, _, count in everything)


def test_measurement_plan_reads_far_fewer_words_than_the_whole_table() -> None:
    cost = LineCost(19200)
    whole = [(t, start, count) for t in (HOLDING, INPUT) for start, count in LAMP.blocks(t)]  # the old poll
    full = PollPlan(LAMP, EVERYTHING, cost)
    measure = PollPlan(LAMP, frozenset({MEASURE}), cost)
    assert cost.seconds(full.requests) < cost.seconds(whole)  # the gaps between role and common rows skipped
    assert sum(c for _, _, c in measure.requests) < sum(c for _, _, c in whole) / 4
    assert cost.seconds(measure.requests) < cost.seconds(whole) / 3
    measurements = {n for n, c in poll_classes(LAMP).items() if c == MEASURE}
    read = {r.name for r in measure.registers}
    assert measurements <= read
    # Registers carried whole inside a bridged gap are decoded too: they cost no extra word.
    for reg in LAMP.registers:
        if reg.name in read - measurements:
            assert any(t == reg.table and s <= reg.address and reg.address + reg.width <= s + c
                       for t, s, c in measure.requests)
    assert {"firmware", "energy"} <= read and "latitude" not in read


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("baud", [None, 9600, 19200, 115200])
@pytest.mark.parametrize("use_mirrors", [False, True])
def test_plan_decodes_like_the_register_map(role: str, baud: int | None, use_mirrors: bool) -> None:
    """Random words through every class plan give what RegisterMap.decode gives for the same words.

    A mirror's word decodes as the register it mirrors (where no request carries the register itself).
    """
    regmap = load_role(role)
    rng = random.Random(f"{role}{baud}{use_mirrors}")
    for classes in (EVERYTHING, frozenset({MEASURE}), frozenset({MEASURE, COUNTER}), frozenset({SETTING})):
        plan = PollPlan(regmap, classes, LineCost(baud), use_mirrors=use_mirrors)
        # Words for register tables, 0/1 for bit tables (coils, discrete inputs: a device profile may have them).
        answers = [[rng.randrange(2 if t in BIT_TABLES else 0x10000) for _ in range(count)]
                   for t, _, count in plan.requests]
        expected = {reg.name: raw for (t, start, _), words in zip(plan.requests, answers, strict=True)
                    for reg, raw in regmap.decode(t, start, words)}
        for (t, start, count), words in zip(plan.requests, answers, strict=True):
            for name, at in mirrors(regmap).items():
                if use_mirrors and baud and t == INPUT and start <= at < start + count and name not in expected:
                    expected[name] = regmap[name].from_words(words, at - start)
        got = {regmap.registers[i].name: raw for i, raw in plan.decode(answers)}
        assert got.keys() == {r.name for r in plan.registers} == expected.keys()
        for name, raw in got.items():
            if isinstance(raw, float) and math.isnan(raw):  # NaN F32 patterns
                continue
            assert raw == expected[name], (name, classes)


def test_short_answer_is_refused() -> None:
    plan = PollPlan(LAMP, frozenset({MEASURE}), LineCost(19200))
    answers = [[0] * c for _, _, c in plan.requests]
    answers[0] = answers[0][:-1]
    with pytest.raises(PollPlanError, match="answered with"):
        plan.decode(answers)
    with pytest.raises(PollPlanError, match="answers to"):
        plan.decode(answers[1:])


def _poll(memory: NodePolls, words: dict[int, list[int]], cost: LineCost) -> tuple[frozenset[int], dict[str, object]]:
    plan = PollPlan(LAMP, memory.due(), cost, use_mirrors=memory.mirrors)
    answers = [words[t][s:s + c] for t, s, c in plan.requests]
    readings = memory.absorb(plan, plan.decode(answers))
    return plan.classes, {reg.name: raw for reg, raw in readings}


def test_node_memory_reads_everything_first_then_what_is_due() -> None:
    cost = LineCost(19200)
    memory = NodePolls(LAMP, counter_every=3)
    words = {HOLDING: [0] * 300, INPUT: [0] * 300}
    words[HOLDING][LAMP["rated_power"].address] = 60
    classes, values = _poll(memory, words, cost)
    assert classes == EVERYTHING
    assert len(values) == len(LAMP.registers)  # every register reported, every time
    words[HOLDING][LAMP["rated_power"].address] = 75  # a change nobody announced: not read
    words[INPUT][LAMP["power"].address] = 123
    seen = [_poll(memory, words, cost) for _ in range(5)]
    assert [SETTING in c for c, _ in seen] == [False] * 5
    assert [COUNTER in c for c, _ in seen] == [False, False, True, False, False]  # polls 1..5, every 3rd
    assert all(v["power"] == 123 and v["rated_power"] == 60 and len(v) == len(LAMP.registers) for _, v in seen)
    assert memory.settings_reads == 1


def test_settings_are_read_again_when_settings_changes_moves() -> None:
    cost = LineCost(19200)
    memory = NodePolls(LAMP, counter_every=1)  # settings_changes is a counter: read it at every poll here
    words = {HOLDING: [0] * 300, INPUT: [0] * 300}
    _poll(memory, words, cost)
    words[HOLDING][LAMP["rated_power"].address] = 75
    words[INPUT][LAMP["settings_changes"].address] = 1
    classes, values = _poll(memory, words, cost)  # this poll sees the counter move ...
    assert SETTING not in classes and values["rated_power"] == 0
    classes, values = _poll(memory, words, cost)  # ... the next one reads the settings
    assert SETTING in classes and values["rated_power"] == 75
    classes, _ = _poll(memory, words, cost)
    assert SETTING not in classes


def test_a_reboot_makes_the_next_poll_read_everything() -> None:
    cost = LineCost(19200)
    memory = NodePolls(LAMP)
    words = {HOLDING: [0] * 300, INPUT: [0] * 300}
    uptime = LAMP["uptime"]
    words[INPUT][uptime.address + 1] = 500
    _poll(memory, words, cost)
    words[INPUT][uptime.address + 1] = 501
    classes, _ = _poll(memory, words, cost)
    assert IDENTITY not in classes and SETTING not in classes
    words[INPUT][uptime.address + 1] = 3  # uptime went back: the node booted again
    _poll(memory, words, cost)
    assert memory.due() == EVERYTHING


def test_request_reads_everything_at_the_next_poll() -> None:
    memory = NodePolls(LAMP)
    words = {HOLDING: [0] * 300, INPUT: [0] * 300}
    _poll(memory, words, LineCost(None))
    assert memory.due() != EVERYTHING
    memory.request()
    assert memory.due() == EVERYTHING


def test_a_lamp_routine_serial_poll_is_one_request_once_its_firmware_answers_the_mirrors() -> None:
    """dim_level and relay are read at their input mirrors (27, 28): one run 0..28 with the measurements."""
    assert mirrors(LAMP) == {"dim_level": 27, "relay": 28}
    cost = LineCost(115200)
    assert PollPlan(LAMP, frozenset({MEASURE}), cost, use_mirrors=True).requests == [(INPUT, 0, 29)]
    assert len(PollPlan(LAMP, frozenset({MEASURE}), cost).requests) == 2  # firmware 1.0: in place
    assert len(PollPlan(LAMP, frozenset({MEASURE}), LineCost(None), use_mirrors=True).requests) == 2  # TCP

    for firmware, answered in ((0x0100, False), (0x0101, True), (0x0200, True)):
        memory = NodePolls(LAMP)
        assert not memory.mirrors  # nothing known before the first poll
        words = {HOLDING: [0] * 300, INPUT: [0] * 300}
        words[INPUT][LAMP["firmware"].address] = firmware
        words[HOLDING][LAMP["dim_level"].address] = 40
        words[INPUT][27] = 40  # what a 1.1 lamp answers there
        _poll(memory, words, cost)
        assert memory.mirrors is answered, hex(firmware)
        plan = PollPlan(LAMP, memory.due(), cost, use_mirrors=memory.mirrors)
        assert [t for t, _, _ in plan.requests] == ([INPUT] if answered else [HOLDING, INPUT])
        _, values = _poll(memory, words, cost)
        assert values["dim_level"] == 40
