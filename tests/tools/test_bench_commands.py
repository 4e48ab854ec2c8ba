"""The whole-bus command bench's limits: the line-rate limit and the floor of the characters alone."""

from __future__ import annotations

import pytest

from gateway.transport.modbus_rtu import TURNAROUND
from tools.bench.commands import line_limit, percentile, wire_floor


def test_wire_floor_counts_the_characters_of_the_frames() -> None:
    """A broadcast of one register (11 bytes) and per lamp an 8-byte read and a 7-byte answer, 11 bits each."""
    char = 11 / 19200
    assert wire_floor(247, 19200) == pytest.approx(11 * char + TURNAROUND + 247 * 15 * char)
    assert wire_floor(247, 19200) == pytest.approx(2.229, abs=0.001)


@pytest.mark.parametrize("baud", [9600, 19200, 115200])
def test_the_line_rate_limit_adds_two_frame_gaps_per_lamp(baud: int) -> None:
    """The limit is the floor plus a 3.5-character gap (1.75 ms above 19200 bit/s) after every frame."""
    char = 11 / baud
    gap = max(3.5 * char, 0.00175) if baud > 19200 else 3.5 * char
    assert line_limit(64, baud) - wire_floor(64, baud) == pytest.approx(gap + 64 * 2 * gap)


def test_percentile_is_nearest_rank() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 0.99) == 5.0
