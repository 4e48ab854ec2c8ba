"""Baselines survive a restart; flags are numbered for good; a bad file is refused by name."""

from __future__ import annotations

from pathlib import Path

import cbor2
import pytest

from gateway.analytics import FLAG_SEQ_BASE, Analytics, AnalyticsConfig, BaselineError, BaselineStore, Flag
from gateway.analytics.flags import is_flag_seq, senml_records

T0 = 1_772_409_600.0


def lamp_night(engine: Analytics, night: int, power: float) -> list[Flag]:
    """One night of a lamp at 100 % drawing ``power``, then the noon reading that closes it."""
    flags: list[Flag] = []
    start = T0 + night * 86400 + 19 * 3600
    for k in range(24):
        flags += engine.observe("lamp-1", "lamp", "s", start + k * 600, {
            "power": power, "level_actual": 100, "level_target": 100, "relay": 1, "power_factor": 0.95,
            "energy": night * 1000 + k * 10, "burn_time": night * 20000 + k * 600, "lux": 1})
    flags += engine.observe("lamp-1", "lamp", "s", T0 + (night + 1) * 86400 + 13 * 3600, {
        "power": 0.0, "level_actual": 0, "level_target": 0, "relay": 0, "lux": 20000})
    return flags


def test_learned_baseline_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "baselines.db"
    first = Analytics(AnalyticsConfig(), BaselineStore(path))
    for night in range(2):  # the two learning nights
        lamp_night(first, night, 60.0)
    seq = first.next_seq("lamp-1")
    first.close()

    again = Analytics(AnalyticsConfig(), BaselineStore(path))
    assert again.state("lamp-1", "lamp")["learned"] == 2
    flags = lamp_night(again, 2, 66.0)  # 10 % more than the baseline learned before the restart
    drift = [f for f in flags if f.rule == "lamp.driver_drift"]
    assert len(drift) == 1 and drift[0].baseline == 60.0 and drift[0].observed == 66.0
    assert again.next_seq("lamp-1") == seq + 1  # flag numbers never repeat across restarts
    again.close()


def test_a_file_that_is_not_sqlite_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "baselines.db"
    path.write_bytes(b"not a database at all" * 100)
    with pytest.raises(BaselineError, match=r"baselines\.db"):
        BaselineStore(path)


def test_flag_payload_round_trip_and_senml_records() -> None:
    flag = Flag("lamp-1", "lamp.driver_drift", T0, 60.0, 66.0, ((T0 - 86400, 1.02), (T0, 1.1)), "power up",
                extra=(("share", 0.1),))
    assert Flag.from_payload("lamp-1", flag.payload()) == flag
    assert isinstance(cbor2.loads(flag.payload()), dict)
    seq = FLAG_SEQ_BASE + 7
    assert is_flag_seq(seq) and not is_flag_seq(2**32 - 1)
    records = senml_records(flag, seq)
    assert records[0] == {"n": "flag", "t": T0, "vs": "lamp.driver_drift"}
    named = {r["n"]: r for r in records}
    assert named["flag_seq"]["v"] == seq
    assert named["flag_baseline"]["v"] == 60.0 and named["flag_observed"]["v"] == 66.0
    assert named["flag_share"]["v"] == 0.1
    assert [(r["t"], r["v"]) for r in records if r["n"] == "flag_evidence"] == list(flag.evidence)


def test_an_outbox_event_payload_is_not_a_flag() -> None:
    with pytest.raises(ValueError, match="not an analytics record"):
        Flag.from_payload("lamp-1", cbor2.dumps([T0, 3, 1, False]))


def test_analytics_off_judges_nothing() -> None:
    engine = Analytics(AnalyticsConfig(enabled=False))
    assert lamp_night(engine, 0, 60.0) == []
    assert engine.readings == 0
