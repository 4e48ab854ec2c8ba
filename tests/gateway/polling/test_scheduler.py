"""The poll schedule: earliest due first, rhythm kept, missed slots counted, fair under overload."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from gateway.polling.scheduler import Gate, Schedule


def test_nothing_is_taken_before_it_is_due() -> None:
    """A node is handed out only once its due time has come."""
    s = Schedule([("a", 1.0)], start=10.0)
    assert s.take(9.99) is None
    assert s.take(10.0) == ("a", 0)
    assert s.take(10.0) is None  # taken: out of the queue until done
    s.done("a")
    assert s.next_due() == 11.0


def test_late_slots_are_counted_and_the_rhythm_kept() -> None:
    """A poll taken 3.5 intervals late skips 3 slots; the next is due on the grid, not from now."""
    s = Schedule([("a", 1.0)], start=0.0)
    assert s.take(3.5) == ("a", 3)
    s.done("a")
    assert s.next_due() == 4.0


def test_overloaded_bus_serves_nodes_in_turn() -> None:
    """When every node is always overdue, each gets the same share (round robin)."""
    s = Schedule([(k, 0.01) for k in "abcd"], start=0.0)
    served: Counter[str] = Counter()
    now = 0.0
    for _ in range(400):
        now += 0.01  # one poll takes as long as every node's interval: 4x overloaded
        key, _missed = s.take(now) or ("", 0)
        served[key] += 1
        s.done(key)
    assert set(served.values()) == {100}


def test_slower_nodes_keep_their_own_interval() -> None:
    """A node polled every 1 s gets its slots next to one polled every 0.1 s, not fewer."""
    s = Schedule([("fast", 0.1), ("slow", 1.0)], start=0.0)
    served: Counter[str] = Counter()
    now = 0.0
    while now < 10.0:
        taken = s.take(now)
        if taken is None:
            now = s.next_due() or now
            continue
        served[taken[0]] += 1
        s.done(taken[0])
    assert served["slow"] == 10
    assert served["fast"] in (100, 101)  # 100 x 0.1 may add up to just under 10.0


def test_removed_node_is_not_put_back() -> None:
    """A node removed while its poll runs does not come back."""
    s = Schedule([("a", 1.0), ("b", 1.0)], start=0.0)
    assert s.take(0.0) == ("a", 0)
    s.remove("a")
    s.done("a")
    assert "a" not in s and len(s) == 1
    assert s.take(5.0) == ("b", 5)
    assert s.take(5.0) is None


def test_bad_entries_are_refused() -> None:
    """Duplicate keys and non-positive intervals are errors."""
    s = Schedule([("a", 1.0)])
    with pytest.raises(ValueError, match="already scheduled"):
        s.add("a", 1.0, 0.0)
    with pytest.raises(ValueError, match="interval must be positive"):
        s.add("b", 0.0, 0.0)


def test_gate_waits_for_room() -> None:
    """Waiters pass once room() turns true, all of them."""
    room = [False]

    async def main() -> None:
        gate = Gate(lambda: room[0], recheck=0.005)
        waiters = [asyncio.create_task(gate.wait()) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert not any(w.done() for w in waiters)
        room[0] = True
        await asyncio.wait_for(asyncio.gather(*waiters), 10)
        assert gate.open()

    asyncio.run(main())
