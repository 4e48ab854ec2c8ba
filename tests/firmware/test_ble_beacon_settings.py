"""The beacon's radio settings: checked at boot (a bad ble.json boots with the defaults and says why), set
over GATT (OP_RADIO) into ble.json before they apply, TX power handed to the board, read back in the result.

The radio chip is recorded (the real run on the virtual radio: tests/gateway/transport/test_ble_radio_settings.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mp_env  # noqa: F401  (the frozen asyncio on MicroPython)
from test_ble_gatt_service import ADDRESS, GATEWAY, KEY, ROWS, Board, Radio

from firmware.ble_beacon import Beacon, GattService, load_settings
from firmware.registers import RegisterBank
from protocols import ble_gatt
from protocols.roles import meter


class Chip(Radio):
    """The recorded radio, with what the beacon asks of it too."""

    def active(self, flag: bool) -> None:
        self.on = flag

    def config(self, *name: str, **settings: Any) -> Any:
        if name == ("mac",):
            return (1, ADDRESS)
        self.settings = settings
        return None

    def gap_advertise(self, interval_us: int, data: bytes) -> None:
        self.advertised = (interval_us, bytes(data))


class SimBoard(Board):
    def __init__(self, flash: Path) -> None:
        super().__init__()
        self.flash_dir = str(flash)
        self.tx: list[int] = []

    def ble_tx_power(self, ble: Any, dbm: int) -> bool:
        self.tx.append(dbm)
        return True


def beacon_on(tmp_path: Path, **settings: Any) -> tuple[Chip, SimBoard, Beacon]:
    (tmp_path / "ble.json").write_text(json.dumps({"key": KEY.hex(), **settings}))
    chip, board = Chip(), SimBoard(tmp_path)
    bank = RegisterBank(meter.REGISTERS)  # the meter's table: what its adverts carry
    loaded = load_settings(str(tmp_path / "ble.json"))
    assert loaded is not None
    return chip, board, Beacon(chip, bank, board, "meter", loaded)


def test_a_bad_radio_setting_boots_with_the_defaults_and_says_why(tmp_path: Path) -> None:
    _, board, beacon = beacon_on(tmp_path, interval_ms=500, tx_power_dbm=5)
    assert beacon.radio_settings() == (10000, 0, 0)
    error = json.loads(beacon.diagnostics())["settings_error"]
    assert error == "tx_power_dbm 5 is not one of (-12, -9, -6, -3, 0, 3, 6, 9)"
    assert board.tx == [0]


def test_a_long_interval_advertises_at_the_longest_legacy_interval(tmp_path: Path) -> None:
    chip, _, beacon = beacon_on(tmp_path, interval_ms=60000)
    beacon.advertise()
    assert chip.advertised[0] == 10_240_000 and beacon.radio_settings() == (60000, 0, 0)


def test_radio_settings_over_gatt_are_stored_applied_and_read_back(tmp_path: Path) -> None:
    chip, board, beacon = beacon_on(tmp_path, interval_ms=1000, burst_ms=100)
    service = GattService(chip, board, RegisterBank(ROWS), beacon, KEY, ADDRESS)
    chip.write(GATEWAY.command(1, ble_gatt.OP_RADIO))  # read
    chip.write(GATEWAY.command(2, ble_gatt.OP_RADIO, ble_gatt.radio_body(2000, -6, 1)))
    chip.write(GATEWAY.command(3, ble_gatt.OP_RADIO, bytes((0xD0, 0x07, 4, 0))))  # 4 dBm: no such level
    chip.write(GATEWAY.command(4, ble_gatt.OP_RADIO, b"\x01"))  # a body of the wrong size
    service.serve_pending()
    answers = [GATEWAY.open_result(frame) for _, _, frame in chip.notified]
    assert [(c, s) for c, s, _ in answers] == [(1, 0), (2, 0), (3, 3), (4, ble_gatt.STATUS_BAD_OP)]
    assert ble_gatt.parse_radio(bytes(answers[0][2])) == (1000, 0, 0)
    assert ble_gatt.parse_radio(bytes(answers[1][2])) == (2000, -6, 1)
    assert beacon.radio_settings() == (2000, -6, 1) and board.tx == [0, -6]
    stored = json.loads((tmp_path / "ble.json").read_text())
    assert stored == {"key": KEY.hex(), "interval_ms": 2000, "burst_ms": 100, "tx_power_dbm": -6, "sleep": True}
    assert not (tmp_path / "ble.json.tmp").exists()
