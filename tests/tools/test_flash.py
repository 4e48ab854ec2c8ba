"""streetedge flash: clear one-line failures, with no chip behind the port and for files that are no image.

The success path needs an ESP32 on a USB port, which these machines lack (docs/hardware.md says what a
bench checks); esptool's own tests cover its protocol.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _flash(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", "flash", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "micropython.bin"
    path.write_bytes(bytes([0xE9, 0x03, 0x02, 0x20]) + bytes(4092))  # an ESP image header, padding
    return path


def test_no_chip_behind_the_port(image: Path) -> None:
    master, slave = pty.openpty()  # a serial line where nothing answers
    try:
        done = _flash("--port", os.ttyname(slave), "--firmware", str(image), "--connect-attempts", "1")
        received = os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)
    assert done.returncode == 3, done.stderr
    assert done.stderr.startswith("streetedge flash: ") and "no ESP32 answered" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert b"\xc0" in received  # esptool did try: SLIP-framed sync requests went out on the line


@pytest.mark.parametrize(("content", "args", "code", "words"), [
    (None, [], 2, "No such file"),
    (b"MZ\x00\x00" * 10, [], 2, "not an ESP firmware image"),
    (b"", [], 2, "not an ESP firmware image"),
    (bytes([0xE9]) + bytes(100), ["--chip", "esp8266"], 2, "--chip 'esp8266'"),
    (bytes([0xE9]) + bytes(100), ["--port", "/dev/streetedge-no-such-port"], 3, "no such device"),
])
def test_bad_files_and_ports_end_in_one_line(tmp_path: Path, content: bytes | None, args: list[str], code: int,
                                             words: str) -> None:
    firmware = tmp_path / "fw.bin"
    if content is not None:
        firmware.write_bytes(content)
    port = [] if "--port" in args else ["--port", "/dev/null"]
    done = _flash(*port, "--firmware", str(firmware), *args)
    assert done.returncode == code, done.stderr
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
