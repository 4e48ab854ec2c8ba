"""``streetedge flash``: write the MicroPython base image to an ESP32 with esptool (used as a library).

::

    streetedge flash --port /dev/ttyUSB0 --firmware ESP32_GENERIC-20250415-v1.25.0.bin

The engineer supplies the vendor image (nothing is downloaded). Before the
board is touched the file is checked: it must be an ESP image (magic byte
0xE9). Then esptool connects (the board's auto-reset into its ROM loader),
and the chip and its flash are checked: the chip must be the board's (ESP32,
for the ESP32-WROOM-32 boards of this project) and the flash large enough for
the image at its offset (0x1000 on the ESP32). esptool writes and verifies the
image, showing its progress, and resets the chip, which then boots MicroPython;
``streetedge provision`` takes it from there.

Every failure ends in one line saying what is wrong, with the exit codes of
``tools/exit_codes.py`` (3: no chip behind the port, or the port busy or
missing; 2: a wrong file, chip or flash size).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

FIRMWARE_OFFSET = {"esp32": 0x1000, "esp32s3": 0x0, "esp32c3": 0x0}
"""Where MicroPython's image starts in flash, by chip (its bootloader's place)."""
CHIP_NAMES = {"esp32": "ESP32", "esp32s3": "ESP32-S3", "esp32c3": "ESP32-C3"}
ESP_IMAGE_MAGIC = 0xE9


class FlashError(Exception):
    """Flashing could not be done; ``code`` is the exit status of the command line."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def check_firmware(path: Path, chip: str) -> bytes:
    """The image's bytes, refused unless they look like an ESP image for ``chip``."""
    if chip not in FIRMWARE_OFFSET:
        raise FlashError(f"--chip {chip!r}: one of {', '.join(FIRMWARE_OFFSET)}", 2)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FlashError(f"--firmware {path}: {exc.strerror or exc}", 2) from None
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise FlashError(f"--firmware {path}: not an ESP firmware image (it does not start with 0xE9); "
                         "use the vendor's .bin for the board", 2)
    return data


def flash(port: str, firmware: Path, *, chip: str = "esp32", baud: int = 460800, connect_attempts: int = 7) -> str:
    """Write ``firmware`` to the chip on ``port``; returns what was written, in words. Raises FlashError."""
    data = check_firmware(firmware, chip)
    if not Path(port).exists():
        raise FlashError(f"--port {port}: no such device (is the board plugged in?)", 3)
    from esptool.cmds import attach_flash, detect_chip, detect_flash_size, flash_size_bytes, reset_chip, run_stub
    from esptool.cmds import write_flash as esptool_write_flash
    from esptool.util import FatalError
    from serial import SerialException

    offset = FIRMWARE_OFFSET[chip]
    # esptool's progress and notes go to standard output; standard error keeps our one line
    try:
        with contextlib.redirect_stderr(sys.stdout), detect_chip(port, connect_attempts=connect_attempts) as rom:
            if CHIP_NAMES[chip] != rom.CHIP_NAME:
                raise FlashError(f"the chip on {port} is an {rom.CHIP_NAME}, not an {CHIP_NAMES[chip]} "
                                 f"(--chip {chip})", 2)
            esp = run_stub(rom)
            if baud != 115200:
                esp.change_baud(baud)
            attach_flash(esp)
            size_name = detect_flash_size(esp)
            size = flash_size_bytes(size_name) if size_name else None
            if size is not None and offset + len(data) > size:
                raise FlashError(f"the image needs {offset + len(data)} bytes of flash, the chip has {size_name}", 2)
            esptool_write_flash(esp, [(offset, str(firmware))])
            reset_chip(esp, "hard-reset")
    except FlashError:
        raise
    except (FatalError, SerialException, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise FlashError(f"{port}: no ESP32 answered: {reason}", 3) from None
    return f"{len(data)} bytes written at {offset:#x} on the {CHIP_NAMES[chip]} at {port} ({size_name} flash)"
