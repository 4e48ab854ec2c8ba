"""``streetedge bench node`` in small: a BLE role's node, a battery node with no bus, served over the radio."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.bench.node import measure_role, serves, table


@pytest.mark.slow
def test_a_ble_meter_is_served_over_the_radio_and_advertises(tmp_path: Path) -> None:
    """The battery meter (no bus) with its beacon and GATT service: every write taken over GATT, GATT reads
    answered, adverts sent, no Modbus request, and its heap figures left by the node (the image's buffer
    counted apart); the virtual radio's own share (its module and link: C and the BLE stack's heap on an
    ESP32) measured and reported beside the peak."""
    figures = measure_role("meter-ble", 8.0, tmp_path, "192K")
    assert serves(figures), figures
    assert figures["role"] == "meter-ble" and figures["bus"] is False
    assert figures["gatt_answered"] > 0 and figures["writes"] > 0 and figures["adverts"] > 0, figures
    assert figures["modbus_requests"] == 0, figures
    assert figures["rom_heap"] and figures["heap_peak"] and figures["heap_peak"] >= figures["heap_live"] > 0
    assert 0 < figures["radio_heap"] < figures["heap_peak"] // 4, figures
    without = f"{(figures['heap_peak'] - figures['radio_heap']) / 1024:.1f} KB"
    text = table([{**figures, "image_sim": 1, "image_esp32": 1, "image_rom": 1}], 8.0)
    assert f"meter-ble {figures['radio_heap'] / 1024:.1f} KB, peak without it {without}" in text
