"""VirtualStreet as a whole: manifest, processes, pacing, noise, and cleanup."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException as PymodbusError

from protocols.roles.lamp import FIRMWARE_VERSION as LAMP_FIRMWARE
from tools.sim.street import VirtualStreet


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie is gone for our purposes only once reaped; the street reaps its children.
    return False


def _read_many(device: str, units: list[int], rounds: int, retries: int = 0) -> list[Any]:
    """Read all input registers of each unit ``rounds`` times; responses or exceptions."""

    async def main() -> list[Any]:
        client = AsyncModbusSerialClient(device, baudrate=19200, timeout=0.3, retries=retries)
        assert await client.connect()
        out = []
        try:
            for _ in range(rounds):
                for unit in units:
                    try:
                        rr = await client.read_input_registers(0, count=13, device_id=unit)
                    except PymodbusError as exc:  # a noisy line fails reads: count them
                        out.append(exc)
                    else:
                        out.append(rr)
        finally:
            client.close()
        return out

    return asyncio.run(main())


def test_manifest_processes_and_cleanup(tmp_path: Path) -> None:
    """start() returns and writes the manifest; every process it started is gone after stop()."""
    street = VirtualStreet(tmp_path, nodes=2, first_unit=10, seed=4)
    with street:
        manifest = street.start()
        assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
        assert manifest["buses"] == [
            {"name": "bus0", "device": street.master_device, "baud": 19200, "paced": False}
        ]
        assert [n["id"] for n in manifest["nodes"]] == ["lamp-10", "lamp-11"]
        for n in manifest["nodes"]:
            flash = Path(n["flash"])
            assert json.loads((flash / "config.json").read_text()) == {
                "unit": n["unit"], "role": "lamp", "baud": 19200,
            }
            assert json.loads((flash / "sim.json").read_text())["seed"] == 4000 + n["unit"]
            assert "streetedge node ready unit=%d role=lamp" % n["unit"] in (flash / "node.log").read_text()
        pids = [n["pid"] for n in manifest["nodes"]]
        bus_pid = json.loads((tmp_path / "bus0.ports.json").read_text())["pid"]
        results = _read_many(street.master_device, [10, 11], rounds=2)
        assert all(not r.isError() and r.registers[11] == 1 for r in results)
    for pid in [*pids, bus_pid]:
        assert _gone(pid)


def test_a_node_keeps_its_config_across_restarts(tmp_path: Path) -> None:
    """The street writes config.json only once: what a node was given stays."""
    with VirtualStreet(tmp_path, nodes=1) as street:
        street.start()
        config = street.node(1).flash / "config.json"
        config.write_text(json.dumps({"unit": 1, "role": "lamp", "baud": 19200, "sample_ms": 250}))
        street.kill_node(1)
        street.start_node(1)
        assert json.loads(config.read_text())["sample_ms"] == 250


def test_paced_street_answers_at_no_more_than_the_line_rate(tmp_path: Path) -> None:
    """Paced at 19200 baud: a 13-register read (8 + 31 bytes) cannot take less than 22 ms."""
    with VirtualStreet(tmp_path, nodes=2, paced=True) as street:
        street.start()
        t0 = time.monotonic()
        results = _read_many(street.master_device, [1, 2], rounds=5, retries=1)
        elapsed = time.monotonic() - t0
    assert all(not isinstance(r, Exception) and not r.isError() for r in results)
    assert elapsed >= len(results) * (8 + 31) * 11 / 19200


def test_noise_is_caught_by_crc_never_delivered_as_data(tmp_path: Path) -> None:
    """0.5 % of bytes corrupted (~18 % of frames): reads fail, but no wrong value gets through."""
    with VirtualStreet(tmp_path, nodes=2, noise=0.005, seed=9) as street:
        street.start()
        results = _read_many(street.master_device, [1, 2], rounds=40)
        time.sleep(1.2)  # the bus writes its counters every second
        stats = street.bus_stats()
    good = [r for r in results if not isinstance(r, Exception) and not r.isError()]
    assert len(good) > len(results) // 2
    assert len(good) < len(results)
    assert all(r.registers[11] == 1 and r.registers[12] == LAMP_FIRMWARE for r in good)
    assert stats["corrupted"] > 0


def test_nodes_exit_when_their_bus_dies(tmp_path: Path) -> None:
    """Pull the bus (SIGKILL): every node sees its line hang up and exits, no orphans."""
    with VirtualStreet(tmp_path, nodes=2) as street:
        street.start()
        bus_pid = json.loads((tmp_path / "bus0.ports.json").read_text())["pid"]
        os.kill(bus_pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while any(street.node(u).alive() for u in (1, 2)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(street.node(u).alive() for u in (1, 2))
        assert "OSError" in street.node(1).log_tail()
