"""``streetedge bench ble`` in small: every advert decoded and stored; on a radio that loses nothing, every reading."""

from __future__ import annotations

import json

from tools.bench.ble import run_ble_bench


def test_small_bench_stores_every_advert_and_receives_every_reading(capsys) -> None:
    """The loss-free radio: each reading is on the air one interval, so it arrives however late the loop runs
    (the default run, with 10 % loss, is the bench's own pass/fail)."""
    assert run_ble_bench(nodes=5, adverts=300, radio_nodes=10, interval=0.3, loss=0.0, seconds=1.0) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    assert result["stored"] == 300
    assert result["radio_sent"] >= 10
    assert result["radio_received"] == result["radio_sent"]
    assert result["radio_lost_pdus"] == 0 and result["radio_refused"] == 0
    assert result["floor_per_s"] > 0 and result["gateway_per_s"] > 0
