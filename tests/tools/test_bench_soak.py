"""The soak bench: its slope (least squares, MB per minute) and its plumbing in a short real run."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.bench.soak import Soak, report, run_soak, slope_per_minute


def test_slope_of_a_straight_line_is_its_rise_per_minute() -> None:
    """Samples on a line rising 0.5 MB every 30 s give exactly 1 MB per minute, whatever the start."""
    samples = [(30.0 * i, 40.0 + 0.5 * i) for i in range(20)]
    assert slope_per_minute(samples) == pytest.approx(1.0)
    assert slope_per_minute([(t + 600, v - 3) for t, v in samples]) == pytest.approx(1.0)


def test_slope_of_symmetric_noise_around_a_level_is_zero() -> None:
    """Ups and downs mirrored about the middle give no slope; one sample or one instant gives 0, not an error."""
    samples = [(10.0 * i, 50.0 + (0.3 if i % 2 else -0.3)) for i in range(61)]
    assert slope_per_minute(samples) == pytest.approx(0.0, abs=1e-3)
    assert slope_per_minute([(5.0, 50.0)]) == 0.0
    assert slope_per_minute([(5.0, 50.0), (5.0, 51.0)]) == 0.0


def test_warmup_samples_are_left_out_of_the_slope() -> None:
    """A steep rise during the warm-up, then flat: the reported slope is the flat part's."""
    soak = Soak(minutes=10, nodes=1, warmup=2)
    soak.samples = [(float(t), 30.0 + t / 10) for t in range(0, 120, 10)]
    soak.samples += [(float(t), 45.0) for t in range(120, 600, 10)]
    assert soak.slope == 0.0
    assert soak.measured[0] == (120.0, 45.0)


def test_a_short_soak_runs_the_gateway_commands_and_a_broker_restart(tmp_path: Path) -> None:
    """8 lamps for a few seconds: RSS sampled, commands confirmed, the gateway reconnects after the restart."""
    soak = run_soak(minutes=0.2, nodes=8, warmup=0.05, every=1.0, sims=2, work=tmp_path)
    assert len(soak.samples) >= 3
    assert all(mb > 10 for _, mb in soak.samples)  # a Python process with the gateway loaded
    assert soak.restart_at is not None and soak.reconnected
    assert soak.commands.sent >= 1 and soak.commands.done >= 1
    assert set(soak.commands.outcomes) == {"done"}, soak.commands.examples
    assert soak.readings_acked > 0
    text = report(soak)
    assert "MB/min" in text and "the gateway reconnected" in text
