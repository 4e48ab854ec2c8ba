"""The SenML-CBOR micro-benchmark runs each way on the same polls and refuses ways that give other bytes."""

from __future__ import annotations

import pytest

from tools.bench import senml_encoder as bench


def test_small_run_compares_with_a_git_revision(capsys):
    assert bench.main(["--before", "HEAD", "--polls", "5", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lamp polls of ")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["definition", "encoder", "before"]
    assert lines[2].endswith("(1.00x encoder)")


def test_a_way_with_other_bytes_is_refused():
    def wrong(time_s, readings):
        return b"\x80"

    with pytest.raises(SystemExit, match="wrong gives other bytes"):
        bench.measure({"wrong": wrong}, count=2, rounds=1)
