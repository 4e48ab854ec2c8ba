"""The real lamp firmware on the virtual street, driven by pymodbus as the gateway would."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pymodbus.client import AsyncModbusSerialClient

from protocols.regmap import INPUT
from protocols.roles import lamp as spec
from tools.sim.street import VirtualStreet

UNITS = (1, 2, 3)
Scenario = Callable[[AsyncModbusSerialClient], Awaitable[Any]]
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def world(street: VirtualStreet, unit: int) -> dict[str, Any]:
    """The physical state of a node's lamp (world.json), or {} while it is being replaced."""
    try:
        data: dict[str, Any] = json.loads((street.node(unit).flash / "world.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def diag(flash: Path) -> dict[str, Any]:
    """A node's diagnostics (diag.json), or {} before the first write."""
    try:
        data: dict[str, Any] = json.loads((flash / "diag.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def run(street: VirtualStreet, scenario: Scenario) -> Any:
    """Run ``scenario(client)`` with a fresh pymodbus RTU client on the street's master pty."""

    async def main() -> Any:
        client = AsyncModbusSerialClient(street.master_device, baudrate=19200, timeout=1.0, retries=2)
        assert await client.connect()
        try:
            return await scenario(client)
        finally:
            client.close()

    return asyncio.run(main())


async def read_inputs(client: AsyncModbusSerialClient, unit: int) -> dict[str, Any]:
    """Every input register of a lamp, decoded through the register map: name -> raw."""
    rr = await client.read_input_registers(0, count=spec.MAP.size(INPUT), device_id=unit)
    assert not rr.isError(), rr
    return {reg.name: raw for reg, raw in spec.MAP.decode(INPUT, 0, rr.registers)}


async def read_holding(client: AsyncModbusSerialClient, unit: int) -> list[int]:
    """dim_level and relay."""
    rr = await client.read_holding_registers(0, count=2, device_id=unit)
    assert not rr.isError(), rr
    return list(rr.registers)


async def poll_inputs(
    client: AsyncModbusSerialClient, unit: int, ok: Callable[[dict[str, Any]], bool], within: float = 10.0
) -> dict[str, Any]:
    """Read the inputs until ``ok(values)``; fail after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    values: dict[str, Any] = {}
    while loop.time() < deadline:
        values = await read_inputs(client, unit)
        if ok(values):
            return values
        await asyncio.sleep(0.2)
    raise AssertionError(f"unit {unit}: condition not met, last {values}")


@pytest.fixture(autouse=True)
def lit_street(street: VirtualStreet) -> None:
    """Every test starts from the power-up state: relay closed, 100 %."""

    async def scenario(client: AsyncModbusSerialClient) -> None:
        for unit in UNITS:
            if not street.node(unit).alive():
                street.start_node(unit)
            rr = await client.write_registers(0, [100, 1], device_id=unit)
            assert not rr.isError(), rr

    run(street, scenario)


def test_every_node_reads_sane_lamp_values(street: VirtualStreet) -> None:
    """Input registers of all three lamps: identity, mains, a lit 60 W luminaire."""

    async def scenario(client: AsyncModbusSerialClient) -> list[dict[str, Any]]:
        return [
            await poll_inputs(client, u, lambda v: v["status"] & spec.STATUS_LAMP_ON and v["power"] > 600)
            for u in UNITS
        ]

    for values in run(street, scenario):
        assert values["role"] == spec.ROLE_ID
        assert values["firmware"] == spec.FIRMWARE_VERSION
        assert 2200 <= values["voltage"] <= 2400  # 0.1 V
        assert 600 <= values["power"] <= 700  # 0.1 W: ~65.7 W at full light
        assert 250 <= values["current"] <= 350  # mA: 65.7 W / (230 V * 0.95)
        assert 0 <= values["temperature"] <= 600  # 0.1 C
        assert values["status"] & spec.STATUS_LAMP_FAILURE == 0
        assert values["status"] & spec.STATUS_SAFE_MODE == 0


def test_dim_write_changes_the_physical_lamp(street: VirtualStreet) -> None:
    """Dimming to 20 % cuts the lamp's real power draw; back to 100 % restores it."""

    async def dim(client: AsyncModbusSerialClient, level: int) -> None:
        rr = await client.write_register(0, level, device_id=1)
        assert not rr.isError(), rr
        assert await read_holding(client, 1) == [level, 1]

    run(street, lambda c: dim(c, 20))
    low = wait_for(lambda: (w := world(street, 1)) and w["light"] == 0.2 and w, what="20 % light")
    assert 10.0 < low["power_w"] < 20.0
    assert world(street, 2)["level"] == 1.0  # the others are untouched

    run(street, lambda c: poll_inputs(c, 1, lambda v: 100 <= v["power"] <= 200))
    run(street, lambda c: dim(c, 100))
    full = wait_for(lambda: (w := world(street, 1)) and w["light"] == 1.0 and w, what="full light")
    assert 60.0 < full["power_w"] < 70.0


def test_relay_off_draws_nothing(street: VirtualStreet) -> None:
    """Opening the relay takes the lamp to 0 W, in the world and in the power register."""

    async def scenario(client: AsyncModbusSerialClient) -> dict[str, Any]:
        rr = await client.write_register(1, 0, device_id=2)
        assert not rr.isError(), rr
        return await poll_inputs(client, 2, lambda v: v["power"] == 0)

    values = run(street, scenario)
    assert values["status"] & spec.STATUS_LAMP_ON == 0
    assert values["status"] & spec.STATUS_LAMP_FAILURE == 0  # switched off is not failed
    w = wait_for(lambda: (w := world(street, 2)) and w["relay"] is False and w, what="relay open")
    assert w["power_w"] == 0.0


def test_broadcast_reaches_every_node(street: VirtualStreet) -> None:
    """One broadcast write (unit 0, no answer) dims the whole street."""

    async def scenario(client: AsyncModbusSerialClient) -> list[list[int]]:
        await client.write_register(0, 20, device_id=0, no_response_expected=True)
        await asyncio.sleep(0.2)  # the spec's turnaround delay after a broadcast
        return [await read_holding(client, u) for u in UNITS]

    assert run(street, scenario) == [[20, 1]] * 3
    for u in UNITS:
        wait_for(lambda u=u: world(street, u).get("level") == 0.2, what=f"unit {u} at 20 %")


def test_out_of_range_dim_is_refused_and_changes_nothing(street: VirtualStreet) -> None:
    """dim_level 101 -> exception 3 (illegal value); the lamp keeps its level."""

    async def scenario(client: AsyncModbusSerialClient) -> tuple[Any, list[int], Any]:
        await client.write_register(0, 40, device_id=3)
        bad = await client.write_register(0, 101, device_id=3)
        multi = await client.write_registers(0, [50, 2], device_id=3)  # relay 2: whole write refused
        return bad, await read_holding(client, 3), multi

    bad, holding, multi = run(street, scenario)
    assert bad.isError() and bad.exception_code == 3
    assert multi.isError() and multi.exception_code == 3
    assert holding == [40, 1]
    wait_for(lambda: world(street, 3).get("level") == 0.4, what="level 40 %")


def test_read_only_and_missing_addresses_are_refused(street: VirtualStreet) -> None:
    """Writing where no writable register is -> exception 2; reading past the bank -> 2; FC 5 -> 1."""

    async def scenario(client: AsyncModbusSerialClient) -> list[Any]:
        return [
            await client.write_register(50, 1, device_id=1),  # a gap between the lamp's and the common registers
            await client.read_input_registers(170, count=10, device_id=1),  # past the event window's end (176)
            await client.read_holding_registers(280, count=5, device_id=1),  # past the calendar's end (283)
            await client.write_coil(0, True, device_id=1),
        ]

    wr, ir, hr, coil = run(street, scenario)
    assert wr.isError() and wr.exception_code == 2
    assert ir.isError() and ir.exception_code == 2
    assert hr.isError() and hr.exception_code == 2
    assert coil.isError() and coil.exception_code == 1


def test_seq_and_energy_survive_power_cuts(street: VirtualStreet) -> None:
    """SIGKILL at random instants: seq never repeats, energy never goes backwards."""
    node = street.node(3)
    street.kill_node(3)
    # A node with history: 1000 Wh metered, sequence at 5000.
    (node.flash / "counters.json").write_text(json.dumps({"seq": 5000, "energy_wh": 1000}))
    street.start_node(3)
    rng = random.Random(1)
    seen: list[int] = []
    energy: list[int] = []

    async def sample(client: AsyncModbusSerialClient) -> None:
        for _ in range(3):
            values = await read_inputs(client, 3)
            seen.append(values["seq"])
            energy.append(values["energy"])
            await asyncio.sleep(rng.uniform(0.2, 1.2))

    for _ in range(3):
        run(street, sample)
        street.kill_node(3)
        street.start_node(3)
    run(street, sample)

    assert seen[0] >= 5000
    assert energy[0] >= 1000
    assert energy == sorted(energy)
    # Within one boot a value may be read twice (two reads inside one sample
    # period); across boots, every number is new: strictly increasing per boot.
    boots = [seen[k:k + 3] for k in range(0, len(seen), 3)]
    for before, after in itertools.pairwise(boots):
        assert min(after) > max(before)
    for boot in boots:
        assert boot == sorted(boot)


def test_lamp_failure_and_over_temperature_flags(street: VirtualStreet) -> None:
    """A dead driver in a hot cabinet: lamp_failure and over_temperature, no power."""
    street.kill_node(2)
    # A fresh lamp (no world to continue: its driver starts at the ambient temperature).
    (street.node(2).flash / "world.json").unlink()
    street.start_node(2, hardware={"fault": "driver", "ambient_c": 90.0})
    try:
        values = run(street, lambda c: poll_inputs(
            c, 2, lambda v: v["status"] & spec.STATUS_LAMP_FAILURE, within=10.0))
        assert values["status"] & spec.STATUS_OVER_TEMPERATURE
        assert values["status"] & spec.STATUS_LAMP_ON == 0
        assert values["power"] == 0
    finally:
        street.kill_node(2)
        street.start_node(2)


def test_bad_config_boots_in_safe_mode_on_unit_247(street: VirtualStreet) -> None:
    """An invalid config.json never bricks a node: unit 247, safe_mode flag, lamp lit."""
    node = street.node(1)
    config = node.flash / "config.json"
    good = config.read_text()
    street.kill_node(1)
    config.write_text(json.dumps({"unit": 999, "role": "lamp"}))
    try:
        street.start_node(1)
        values = run(street, lambda c: poll_inputs(c, 247, lambda v: v["power"] > 600))
        assert values["status"] & spec.STATUS_SAFE_MODE
        assert values["role"] == spec.ROLE_ID
        assert "SAFE MODE" in node.log_tail()
    finally:
        street.kill_node(1)
        config.write_text(good)
        street.start_node(1)


def test_diagnostics_report_heap_and_frames(street: VirtualStreet) -> None:
    """diag.json: heap peak within the 128K budget, frames counted, answers fast."""

    async def traffic(client: AsyncModbusSerialClient) -> None:
        for _ in range(20):
            await read_inputs(client, 1)

    run(street, traffic)
    d = wait_for(lambda: (d := diag(street.node(1).flash)) and d["frames_ok"] >= 20 and d,
                 timeout=15.0, what="diagnostics")
    assert 0 < d["heap_peak"] < 128 * 1024
    assert d["heap_free"] > 0
    assert d["crc_errors"] == 0
    assert d["turnaround_max_us"] > 0


def test_settings_changes_counts_setting_writes_not_time_syncs(street: VirtualStreet) -> None:
    """The counter the gateway watches moves with an accepted setting write, not with a clock write or a refusal."""
    safe = spec.MAP["safe_level"]
    clock = spec.MAP["clock"]

    async def scenario(client: AsyncModbusSerialClient) -> list[int]:
        seen = [(await read_inputs(client, 2))["settings_changes"]]
        rr = await client.write_register(safe.address, 80, device_id=2)
        assert not rr.isError(), rr
        seen.append((await read_inputs(client, 2))["settings_changes"])
        rr = await client.write_registers(clock.address, list(clock.words(int(time.time()))), device_id=2)
        assert not rr.isError(), rr
        seen.append((await read_inputs(client, 2))["settings_changes"])
        bad = await client.write_register(safe.address, 101, device_id=2)
        assert bad.isError() and bad.exception_code == 3
        seen.append((await read_inputs(client, 2))["settings_changes"])
        return seen

    before, after_setting, after_clock, after_refusal = run(street, scenario)
    assert after_setting == (before + 1) & 0xFFFF
    assert after_clock == after_refusal == after_setting
