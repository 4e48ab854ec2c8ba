"""``streetedge bench ble`` in small: every advert decoded and stored, no reading lost beyond the radio's loss."""

from __future__ import annotations

import json

from tools.bench.ble import run_ble_bench


def test_small_bench_stores_every_advert_and_loses_no_reading_beyond_the_injected_rate(capsys) -> None:
    assert run_ble_bench(nodes=5, adverts=500, radio_nodes=20, interval=0.3, loss=0.1, seconds=2.0) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    assert result["stored"] == 500
    assert result["radio_sent"] >= 20 and result["radio_lost_pdus"] > 0
    assert result["radio_received_share"] >= 0.9
    assert result["floor_per_s"] > 0 and result["gateway_per_s"] > 0
