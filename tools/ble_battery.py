"""The battery budget of a BLE node from its radio settings: average current and years on a cell.

Arithmetic on the datasheet-typical figures and assumptions of docs/hardware.md
("Battery budget of a BLE node"), not a measurement. What the settings change:

- ``interval_ms``: one advertising event (three channels) per reading advert,
  :data:`ADVERT_MAS` at 0 dBm;
- ``tx_power_dbm``: the event's charge, linearly, :data:`TX_SLOPE` per dB (so
  +9 dBm costs about a fifth more than 0 dBm, -12 dBm about a quarter less);
- ``sleep``: awake, the floor is the CPU with the radio idle (:data:`AWAKE_MA`);
  asleep (``sleep`` on: light sleep between adverts), it is :data:`LIGHT_SLEEP_MA`
  plus one wake (:data:`WAKE_MAS`) per advert.

``streetedge ble budget`` prints the table for a node's settings or for the
configurations docs/hardware.md shows.
"""

from __future__ import annotations

__all__ = ["CELL_MAH", "average_ma", "table", "years"]

ADVERT_MAS = 0.15
"""mA·s of one advertising event at 0 dBm (three channels, about 0.4 ms each at about 130 mA)."""
TX_SLOPE = 0.022
"""Relative change of the event's charge per dB of TX power (a line through +9 dBm: about +20 %)."""
AWAKE_MA = 40.0
"""mA with the CPU awake and the radio idle (the asyncio loop running): the node without sleep."""
LIGHT_SLEEP_MA = 0.8
"""mA in light sleep."""
WAKE_MAS = 1.2
"""mA·s of one wake from light sleep to advertise (about 30 ms at 40 mA)."""
CELL_MAH = 15_000.0
"""The usable charge of the stated cell (ER34615 class, 19 Ah at 3.6 V, 15 Ah usable)."""


def average_ma(interval_ms: int, tx_power_dbm: int, sleep: bool) -> float:
    """Average current (mA) of a node advertising every ``interval_ms`` at ``tx_power_dbm``, sleeping or not."""
    period_s = interval_ms / 1000
    advert = ADVERT_MAS * (1 + TX_SLOPE * tx_power_dbm)
    if sleep:
        return LIGHT_SLEEP_MA + (WAKE_MAS + advert) / period_s
    return AWAKE_MA + advert / period_s


def years(interval_ms: int, tx_power_dbm: int, sleep: bool, cell_mah: float = CELL_MAH) -> float:
    """Years on ``cell_mah`` at :func:`average_ma`."""
    return cell_mah / average_ma(interval_ms, tx_power_dbm, sleep) / (24 * 365.25)


def table(settings: list[tuple[int, int, bool]]) -> str:
    """The Markdown table of ``(interval_ms, tx_power_dbm, sleep)`` configurations."""
    lines = ["| interval | TX power | sleep | average current | years on 15 Ah |", "|---:|---:|---|---:|---:|"]
    for interval_ms, dbm, sleep in settings:
        lines.append(f"| {interval_ms / 1000:g} s | {dbm:+d} dBm | {'light sleep' if sleep else 'awake'} "
                     f"| {average_ma(interval_ms, dbm, sleep):.2f} mA | {years(interval_ms, dbm, sleep):.2f} |")
    return "\n".join(lines)
