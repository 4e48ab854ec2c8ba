"""An independent Modbus master, mbpoll (libmodbus), against the real lamp firmware; and raw frames."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tty

from protocols.modbus.crc import crc16
from protocols.modbus.master import build_read
from protocols.modbus.pdu import FC_READ_INPUT
from protocols.roles import lamp as spec
from tools.sim.street import VirtualStreet

MBPOLL = shutil.which("mbpoll") or "/usr/bin/mbpoll"
SERIAL = ["-m", "rtu", "-b", "19200", "-P", "none", "-o", "1"]

def mbpoll(street: VirtualStreet, *options: str, write: int | None = None) -> str:
    """Run mbpoll once (0-based references) on the street's master pty; its stdout."""
    assert os.path.exists(MBPOLL), "mbpoll is not installed: `make test` installs it from Debian"
    cmd = [MBPOLL, *SERIAL, "-1", "-0", *options, street.master_device]
    if write is not None:
        cmd.append(str(write))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def values(output: str) -> dict[int, int]:
    """mbpoll's ``[ref]: value`` lines as {ref: value}."""
    return {int(r): int(v) for r, v in re.findall(r"^\[(\d+)\]:\s+(-?\d+)", output, re.MULTILINE)}


def test_mbpoll_reads_the_input_registers(street: VirtualStreet) -> None:
    """All 13 input registers of unit 2, read by libmodbus: identity and a plausible meter."""
    got = values(mbpoll(street, "-a", "2", "-t", "3", "-r", "0", "-c", "13"))
    assert sorted(got) == list(range(13))
    assert got[11] == spec.ROLE_ID
    assert got[12] == spec.FIRMWARE_VERSION
    assert 2200 <= got[3] <= 2400  # voltage, 0.1 V


def test_mbpoll_reads_a_32_bit_counter(street: VirtualStreet) -> None:
    """uptime (input 9..10, high word first) read as one 32-bit integer with -B."""
    got = values(mbpoll(street, "-a", "1", "-t", "3:int", "-B", "-r", "9", "-c", "1"))
    assert 0 <= got[9] < 3600


def test_mbpoll_write_is_read_back(street: VirtualStreet) -> None:
    """Write dim_level 42 to unit 3 with mbpoll, read holding registers back."""
    out = mbpoll(street, "-a", "3", "-t", "4", "-r", "0", write=42)
    assert "Written 1 references" in out
    got = values(mbpoll(street, "-a", "3", "-t", "4", "-r", "0", "-c", "2"))
    assert got == {0: 42, 1: 1}


def _open_master(street: VirtualStreet) -> int:
    fd = os.open(street.master_device, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    os.set_blocking(fd, False)
    return fd


def _read_for(fd: int, seconds: float, want: int | None = None) -> bytes:
    got = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and (want is None or len(got) < want):
        try:
            got += os.read(fd, 256)
        except BlockingIOError:
            time.sleep(0.005)
    return got


def test_bad_crc_gets_no_answer_and_the_next_good_frame_does(street: VirtualStreet) -> None:
    """A request with a wrong CRC is silently ignored; the node answers the next valid request."""
    good = bytes(build_read(1, FC_READ_INPUT, 11, 2))  # role, firmware
    bad = good[:-2] + bytes([good[-2] ^ 0x01, good[-1]])
    fd = _open_master(street)
    try:
        _read_for(fd, 0.1)  # whatever is left from earlier tests
        os.write(fd, bad)
        assert _read_for(fd, 0.3) == b""
        time.sleep(0.01)  # more than t3.5 between frames
        os.write(fd, good)
        answer = _read_for(fd, 5.0, want=9)
    finally:
        os.close(fd)
    assert answer[:3] == bytes([1, 4, 4])
    assert answer[3:7] == bytes([0, spec.ROLE_ID, spec.FIRMWARE_VERSION >> 8, spec.FIRMWARE_VERSION & 0xFF])
    crc = crc16(answer[:7])
    assert answer[7:9] == bytes([crc & 0xFF, crc >> 8])
