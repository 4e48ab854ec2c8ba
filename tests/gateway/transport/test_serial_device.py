"""A serial line that cannot be opened says why: not there, not a tty, or not this user's to open."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from gateway.contracts import load_role
from gateway.service.config import BusConfig
from gateway.transport.modbus_rtu import BusUnavailable, ModbusBus
from gateway.transport.serial_device import device_problem


def test_a_missing_adapter_is_named_as_missing_in_the_bus_error(tmp_path: Path) -> None:
    async def main() -> None:
        bus = ModbusBus(BusConfig(name="bus0", device=str(tmp_path / "ttyUSB0"), parity="N", timeout=0.3))
        with pytest.raises(BusUnavailable) as info:
            await bus.read_node(1, load_role("lamp"))
        assert str(info.value) == (f"bus bus0: cannot open {tmp_path / 'ttyUSB0'}: it does not exist (adapter "
                                   "unplugged, or another name: see ls -l /dev/serial/by-id/)")

    asyncio.run(main())


def test_a_file_that_is_not_a_device_is_named(tmp_path: Path) -> None:
    plain = tmp_path / "ttyUSB0"
    plain.write_text("")
    assert "not a character device" in str(device_problem(str(plain)))


def test_a_terminal_this_user_may_open_is_fine() -> None:
    master, slave = os.openpty()
    try:
        assert device_problem(os.ttyname(slave), try_open=True) is None
    finally:
        os.close(master)
        os.close(slave)
