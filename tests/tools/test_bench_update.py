"""streetedge bench update: an update on a paced line, the other nodes' polls timed before and during it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tools.bench.update import measure, table


@pytest.mark.slow  # ~40 s: a paced line, a 10 s baseline of polls, then a whole image
def test_one_node_is_updated_while_the_other_is_polled_and_timed(tmp_path: Path) -> None:
    """The update is confirmed; the bystander was polled in both phases, and the table shows both."""
    row = measure(115200, 1, tmp_path, bystanders=1)
    assert row["confirmed"] == 1 and row["transfer_s"] >= row["limit_s"]
    for phase in ("before", "during"):
        polls = row["polls"][phase]
        assert polls["polls"] >= 2 and not math.isnan(polls["interval_p50"]), (phase, polls)
        assert polls["delay_p50"] <= polls["delay_max"]
    text = table([row])
    assert "| 115200 | 1 | before |" in text and "| 115200 | 1 | during |" in text
