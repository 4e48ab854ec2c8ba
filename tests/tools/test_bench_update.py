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


def test_the_table_gives_each_failed_nodes_reason() -> None:
    """A node that did not confirm is listed with the delivery's own words, so a run can be looked into."""
    phase = {"polls": 3, "failed": 0, "delay_p50": 0.0, "delay_p95": 0.1, "delay_max": 0.2,
             "interval_p50": 1.0, "interval_p95": 1.1, "interval_max": 1.2}
    row = {"baud": 115200, "nodes": 32, "confirmed": 31, "image": 1000, "limit_s": 0.1, "transfer_s": 0.5,
           "ratio": 5.0, "total_s": 9.0, "bystanders": 3, "polls": {"before": phase, "during": phase},
           "failed": {7: "unit 7 did not confirm the new image within 120 s"}}
    text = table([row])
    assert "| 115200 | 32 | broadcast chunks, then each node | 1000 |" in text and "| 31 of 32 |" in text
    assert "- 115200 bit/s, 32 node(s): unit 7 did not confirm the new image within 120 s" in text
    assert "Not confirmed" not in table([{**row, "confirmed": 32, "failed": {}}])
