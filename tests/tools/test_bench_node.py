"""``streetedge bench node`` in small: a BLE role's node serves its bus with its beacon on the air."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.bench.node import measure_role, serves


@pytest.mark.slow
def test_a_ble_meter_serves_its_bus_and_advertises(tmp_path: Path) -> None:
    """The meter with its beacon and GATT service: every write taken, reads answered, adverts on the radio,
    and its heap figures left by the node (the image's buffer counted apart)."""
    figures = measure_role("ble-meter", 4.0, tmp_path, "192K")
    assert serves(figures), figures
    assert figures["role"] == "ble-meter"
    assert figures["adverts"] and figures["adverts"] > 0
    assert figures["rom_heap"] and figures["heap_peak"] and figures["heap_peak"] >= figures["heap_live"] > 0
