"""The ESP32 images type-check against the ESP32 port's API, and the check catches planted mistakes.

See tools/check_esp32.py for how (mypy with micropython-esp32-stubs and
micropython-stdlib-stubs in place of CPython's typeshed). Each mistake below
is planted in a copy of one file, never in the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.check_esp32 import check, esp32_boards
from tools.image import REPO, roles_of

COMMON = "boards/esp32_common/__init__.py"


def _planted(path: str, old: str, new: str) -> dict[str, str]:
    text = (REPO / path).read_text()
    assert old in text, f"{old!r} is no longer in {path}: update the test"
    return {path: text.replace(old, new, 1)}


def test_every_esp32_board_is_checked() -> None:
    """Three ESP32 boards, each carrying its own role."""
    assert esp32_boards() == ["esp32_env", "esp32_lamp", "esp32_meter"]
    assert [roles_of(b) for b in esp32_boards()] == [["env"], ["lamp"], ["meter"]]


@pytest.mark.parametrize("board", ["esp32_env", "esp32_lamp", "esp32_meter"])
def test_the_image_type_checks_against_the_esp32_stubs(board: str, tmp_path: Path) -> None:
    """No error in what would be flashed: main.py, the board, esp32_common, the role's firmware and protocols."""
    (role,) = roles_of(board)
    assert check(board, role, tmp_path) == []


@pytest.mark.parametrize(
    ("board", "path", "old", "new", "expect"),
    [
        pytest.param("esp32_meter", COMMON, "baudrate=baud", "baudrat=baud", "baudrat", id="misspelled-UART-keyword"),
        pytest.param("esp32_meter", COMMON, "uart.flush()", "uart.flushh()", "flushh", id="missing-UART-method"),
        pytest.param("esp32_meter", COMMON, "machine.Pin.IRQ_RISING", "machine.Pin.IRQ_RISE", "IRQ_RISE",
                     id="missing-constant"),
        pytest.param("esp32_meter", "boards/esp32_meter/__init__.py", "def tamper(", "def tamper_on(", "tamper",
                     id="board-lacks-what-the-role-calls"),
        pytest.param("esp32_env", "boards/esp32_env/__init__.py", "freq=_I2C_HZ)", "frequency=_I2C_HZ)",
                     "frequency", id="misspelled-I2C-keyword"),
        pytest.param("esp32_env", "firmware/bme280.py",
                     "self.i2c.readfrom_mem_into(self.address, reg, buf)",
                     "self.i2c.readfrom_mem_into(self.address, reg)", "readfrom_mem_into",
                     id="driver-misuses-I2C"),
        pytest.param("esp32_lamp", "boards/esp32_lamp/__init__.py", "self._pwm.duty_u16(percent * 65535 // 100)",
                     "self._pwm.duty_u16(str(percent))", "duty_u16", id="wrong-argument-type"),
        pytest.param("esp32_env", COMMON, "n = self._nvs.get_blob(key, self._buf)",
                     "n = self._nvs.get_blob(key)", "get_blob", id="NVS-call-without-buffer"),
    ],
)
def test_the_check_catches_a_planted_mistake(
    board: str, path: str, old: str, new: str, expect: str, tmp_path: Path
) -> None:
    """A wrong keyword, method, constant, argument or board API is reported, in the file that has it."""
    (role,) = roles_of(board)
    errors = check(board, role, tmp_path, replace=_planted(path, old, new))
    assert errors, "the planted mistake went unnoticed"
    assert any(expect in e for e in errors), errors
