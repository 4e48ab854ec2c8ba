"""Function 23 (read/write multiple registers) against the real lamp firmware, pymodbus as the master.

Two lamps on a paced virtual RS-485 line at 115200 bit/s: unit 1 is dimmed with
one 23 transaction (the write and its read-back), unit 2 hears that traffic and
must stay in step with it; then unit 2 gets the same change with 16 + 03, and
both lamps must end in the same state.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from pymodbus.client import ModbusSerialClient
from pymodbus.pdu import ExceptionResponse
from street_kit import wait_for

from protocols.modbus.pdu import EX_ILLEGAL_ADDRESS, EX_ILLEGAL_VALUE
from protocols.roles import lamp as spec
from tools.sim.street import VirtualStreet

BAUD = 115200
DIM = spec.MAP["dim_level"].address
MODE = spec.MAP["mode"].address  # dim_level, relay, mode: holding 0..2


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualStreet]:
    """Two lamps on a paced line at 115200; unit 2 writes its diagnostics often (it is watched)."""
    s = VirtualStreet(tmp_path_factory.mktemp("street"), nodes=2, baud=BAUD, paced=True)
    s.hardware[2] = {"diag_ms": 300}
    with s:
        s.start()
        yield s


@pytest.fixture
def master(street: VirtualStreet) -> Iterator[ModbusSerialClient]:
    """A pymodbus RTU client on the street's master pty."""
    client = ModbusSerialClient(street.master_device, baudrate=BAUD, timeout=1.0, retries=2)
    assert client.connect()
    yield client
    client.close()


def _file(street: VirtualStreet, unit: int, name: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((street.node(unit).flash / name).read_text())
    except (OSError, ValueError):  # being rewritten
        return {}
    return data


def _light(street: VirtualStreet, unit: int) -> float:
    """The level of the lamp's driver (world.json, written every second), 0..1; -1 while it is rewritten."""
    return round(float(_file(street, unit, "world.json").get("level", -1)), 3)


def _ok(rr: Any) -> list[int]:
    assert not rr.isError(), rr
    return list(rr.registers) if hasattr(rr, "registers") else []


def test_one_transaction_dims_the_lamp_and_answers_the_new_state(street: VirtualStreet,
                                                                   master: ModbusSerialClient) -> None:
    """Lamp under its program (mode 1): a 23 writing dim_level 30 answers dim_level 30, relay 1, mode 0."""
    _ok(master.write_register(MODE, 1, device_id=1))
    before = _file(street, 2, "diag.json").get("frames_other", 0)
    rr = master.readwrite_registers(read_address=DIM, read_count=3, write_address=DIM, values=[30], device_id=1)
    # The answer holds the write and its side effect: a dim write takes control from the program (mode 0).
    assert _ok(rr) == [30, 1, 0]
    assert _ok(master.read_holding_registers(DIM, count=3, device_id=1)) == [30, 1, 0]

    # The same change on unit 2 with 16 and a separate read: the same state.
    _ok(master.write_register(MODE, 1, device_id=2))
    _ok(master.write_registers(DIM, [30], device_id=2))
    assert _ok(master.read_holding_registers(DIM, count=3, device_id=2)) == [30, 1, 0]
    # Both drivers dimmed; unit 2 heard unit 1's six frames (three requests, three answers) and lost no byte.
    wait_for(lambda: _light(street, 1) == _light(street, 2) == 0.3, what="both drivers at 30 %")
    diag = wait_for(lambda: (d := _file(street, 2, "diag.json")) and d["frames_other"] >= before + 6 and d,
                    what="unit 2 counting unit 1's frames")
    assert diag["crc_errors"] == 0 and diag["bytes_dropped"] == 0


def test_a_refused_write_changes_nothing(master: ModbusSerialClient) -> None:
    """dim_level 101 is out of range: exception 03, the lamp keeps its level."""
    _ok(master.write_registers(DIM, [45], device_id=1))
    rr = master.readwrite_registers(read_address=DIM, read_count=1, write_address=DIM, values=[101], device_id=1)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == EX_ILLEGAL_VALUE
    assert _ok(master.read_holding_registers(DIM, count=1, device_id=1)) == [45]


def test_a_read_past_the_table_after_a_good_write_answers_02_and_keeps_the_write(
        street: VirtualStreet, master: ModbusSerialClient) -> None:
    """The write goes first (spec order): a read the bank refuses answers 02, the lamp is dimmed all the same."""
    rr = master.readwrite_registers(read_address=0xFF00, read_count=2, write_address=DIM, values=[60], device_id=1)
    assert isinstance(rr, ExceptionResponse) and rr.exception_code == EX_ILLEGAL_ADDRESS
    assert _ok(master.read_holding_registers(DIM, count=1, device_id=1)) == [60]
    wait_for(lambda: _light(street, 1) == 0.6, what="the driver at 60 %")
