"""``streetedge bench bus`` on a small paced bus: the figures it reports hold together."""

from __future__ import annotations

from tools.bench.bus import _report, measure_bus


def test_two_lamps_at_115200_read_measurements_and_never_beat_the_line() -> None:
    """Readings flow, settings are not read again without a change, and nothing is faster than the wire."""
    # No real-time processes in tests; the street's 5 s sampling: the host starts its lamps one sample period apart.
    figures = measure_bus(nodes=2, baud=115200, seconds=3.0, realtime=False, sample_ms=5000)
    tally = figures.tally
    assert tally.polls > 10 and tally.readings > 10 * tally.polls
    assert tally.settings_polls == 0  # nobody wrote a setting: only the first poll of each lamp read them
    assert 0 < tally.counter_polls < tally.polls
    # The paced bus carries 11-bit characters at the line rate and both ends keep t3.5: the limit is a limit.
    assert 0 < figures.rate <= figures.limit
    # The idle time beyond the spec's silences, from the bus's own timestamps, fits in the window.
    idle = figures.idle
    assert all(idle[k] >= 0 for k in ("node", "gateway", "late"))
    assert idle["node"] + idle["gateway"] <= figures.elapsed
    # The gateway's own stamps split its lateness: most gaps are explained, and the request reached the bus
    # after the gateway wrote it (one clock for every process: a negative way back would be a wrong pairing).
    assert idle["explained"] >= idle["gateway_gaps"] / 2 > 0
    assert idle["to_bus_p50"] >= 0 and idle["to_gateway_p50"] >= 0
    # The gateway keeps t3.5 from what it heard, so both ways together fit in what the line lost beyond t3.5.
    assert idle["to_gateway"] + idle["to_bus"] <= idle["gateway"]
    text = _report(figures)
    assert "| measured / limit |" in text and "polls that read the settings | 0 of" in text
    assert "the answer's way from the bus to the gateway's event loop" in text
