"""The battery budget from radio settings: the figures docs/hardware.md states, and the settings' effects."""

from __future__ import annotations

import pytest

from tools.ble_battery import average_ma, years


def test_the_budget_matches_the_documented_assumptions() -> None:
    """Awake about 40 mA; light sleep about 2 mA at 1 s and about 1 mA at 10 s (docs/hardware.md)."""
    assert average_ma(1000, 0, False) == pytest.approx(40.15)
    assert average_ma(1000, 0, True) == pytest.approx(2.15)
    assert average_ma(10000, 0, True) == pytest.approx(0.935)
    assert years(10000, 0, True) == pytest.approx(15_000 / 0.935 / 8766)


def test_sleep_longer_intervals_and_lower_tx_power_each_save() -> None:
    assert average_ma(10000, 0, True) < average_ma(10000, 0, False) / 40
    assert average_ma(60000, 0, True) < average_ma(10000, 0, True) < average_ma(1000, 0, True)
    assert average_ma(1000, -12, True) < average_ma(1000, 0, True) < average_ma(1000, 9, True)
    assert average_ma(1000, 9, True) - average_ma(1000, 0, True) == pytest.approx(0.15 * 0.022 * 9)
