"""A roll-out's steps as node events: their record, their SenML beside the node's own events, and ``watch``."""

from __future__ import annotations

import pytest

from gateway.analytics import FLAG_SEQ_BASE, is_flag_seq
from gateway.delivery.messages import Messages, known_roles
from gateway.delivery.outbox import Entry, Kind
from gateway.mqtt.topics import Topics
from gateway.polling.event_catchup import Event
from gateway.update.rollout_events import (
    ROLLOUT_SEQ_BASE,
    STEPS,
    RolloutStep,
    is_rollout_seq,
    step_of,
)
from tools.decode import decode_message
from tools.watch import Street

T = 1_772_500_000.0
PACKAGE = "cd" * 32


def test_each_step_of_a_roll_out_has_its_own_seq_the_same_when_recorded_again() -> None:
    steps = [RolloutStep.of(7, step, time=T, command="c-9", package=PACKAGE, detail="") for step in STEPS]
    assert [s.seq - ROLLOUT_SEQ_BASE for s in steps] == [56, 57, 58, 59, 60, 61]
    assert RolloutStep.of(7, "failed", time=T + 5, command="c-9", package=PACKAGE, detail="x").seq == steps[4].seq
    assert all(is_rollout_seq(s.seq) for s in steps)
    assert not is_rollout_seq(FLAG_SEQ_BASE + 10**6) and not is_rollout_seq(2**32 - 1)
    assert is_flag_seq(FLAG_SEQ_BASE)  # flags keep their range below the roll-outs'


def test_node_states_map_to_the_steps_operators_see() -> None:
    assert [step_of(s) for s in ("pending", "started", "transferred", "committing", "confirmed", "failed",
                                 "rolled_back", "skipped")] == \
        [None, "started", "transferred", "committed", "confirmed", "failed", "rolled_back", None]


def test_a_step_reads_back_from_its_record_and_garbage_does_not() -> None:
    step = RolloutStep.of(3, "rolled_back", time=T, command="c-9", package=PACKAGE, detail="unit 2 rolled back")
    assert RolloutStep.from_payload(step.seq, step.payload()) == step
    for payload in (b"\xa1ak\x64flag", b"\x01", b"\xa2aka\x66updateas\x64gone"):
        with pytest.raises(ValueError, match="not a roll-out step"):
            RolloutStep.from_payload(step.seq, payload)


@pytest.mark.parametrize("profile", ["senml", "compact"])
def test_steps_travel_with_the_node_events_in_either_profile(profile: str) -> None:
    """One event message per node: its own event unchanged, then the step with command, package and reason."""
    messages = Messages(Topics("s", "g"), "s", "g", known_roles())
    messages.nodes([("lamp-2", "lamp")])
    step = RolloutStep.of(3, "failed", time=T, command="c-9", package=PACKAGE, detail="unit 2 refused: bad MAC")
    entries = [
        Entry(1, "lamp-2", 41, Kind.EVENT, T - 10, Event(41, T - 10, 1, 1).payload(), 0, False),
        Entry(2, "lamp-2", step.seq, Kind.EVENT, T, step.payload(), 0, False),
    ]
    [msg], unreadable = messages.data(entries, events=True, historical=False, profile=profile)
    assert msg.topic == "streetedge/v1/s/g/event/lamp-2" and unreadable == [] and msg.entries == (1, 2)
    named = [(r["n"].rsplit(":", 1)[-1], r.get("v", r.get("vs")), r.get("t")) for r in
             decode_message(msg.payload, topic=msg.topic)]
    assert ("event_seq", 41, T - 10) in named
    assert named[-5:] == [("update", "failed", T), ("update_seq", step.seq, T), ("update_command", "c-9", T),
                          ("update_package", PACKAGE, T), ("update_detail", "unit 2 refused: bad MAC", T)]

    street = Street(Topics("s", "g"))
    assert street.feed(msg.topic, msg.payload) == "event lamp-2: 2 event(s)"
    assert street.alarms[-1].endswith("lamp-2 update failed (c-9): unit 2 refused: bad MAC")
