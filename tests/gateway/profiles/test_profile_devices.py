"""Both buses against devices simulated from their profiles by pymodbus: coils and discrete inputs read and written."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest
from pymodbus.server import ModbusSerialServer

from gateway.contracts import COIL, DISCRETE, HOLDING, INPUT, load_role
from gateway.polling.read_plan import plan_for
from gateway.profiles import shipped_profile
from gateway.service.config import BusConfig
from gateway.transport.bus import Bus, NodeError
from gateway.transport.modbus_rtu import ModbusBus
from gateway.transport.modbus_tcp import ModbusTcpBus
from tools.broker import free_port
from tools.sim.profile_device import ProfileDevice, serve_devices

RELAY = shipped_profile("relay8")


def relay(unit: int = 1) -> ProfileDevice:
    return ProfileDevice(unit, RELAY, {"relay_2": True, "input_5": True, "device_address": unit})


async def exercise(bus: Bus, device: ProfileDevice) -> None:
    """Read every table, switch one relay and several, and see a refused write change nothing."""
    regmap = load_role("relay8")
    blocks = await bus.read_node(1, regmap)
    assert set(blocks) == {COIL, DISCRETE, HOLDING}
    values = {reg.name: reg.value(raw) for reg, raw in plan_for(regmap).decode(blocks)}
    assert values["relay_2"] is True and values["relay_1"] is False
    assert values["input_5"] is True and values["input_4"] is False
    assert values["device_address"] == 1

    await bus.write_coils(1, 6, [1])  # function 05
    assert device.value("relay_7") is True
    await bus.write_coils(1, 0, [1, 0, 1])  # function 15
    assert [device.value(f"relay_{i}") for i in (1, 2, 3)] == [True, False, True]
    start, bits = await bus.read_table(1, regmap, COIL)
    assert (start, list(bits)) == (0, [1, 0, 1, 0, 0, 0, 1, 0])

    with pytest.raises(NodeError) as refused:  # coil 8 does not exist on the module
        await bus.write_coils(1, 7, [1, 1])
    assert refused.value.code == 2
    assert device.value("relay_8") is False
    assert [w[0] for w in device.writes] == [COIL, COIL]


def test_tcp_bus_reads_and_writes_coils_of_a_profile_device() -> None:
    port = free_port()
    device = relay()

    async def main() -> None:
        async with serve_devices([device], port):
            bus = ModbusTcpBus(BusConfig(name="relays", type="tcp", host="127.0.0.1", port=port, timeout=2))
            try:
                await exercise(bus, device)
            finally:
                bus.close()

    asyncio.run(main())


def test_rtu_bus_reads_and_writes_coils_of_a_profile_device(pty_pair) -> None:
    gw_end, node_end = pty_pair
    device = relay()

    async def main() -> None:
        server = ModbusSerialServer([device.simdevice()], port=node_end, baudrate=19200, parity="N")
        await server.serve_forever(background=True)
        bus = ModbusBus(BusConfig(name="relays", device=gw_end, parity="N", timeout=2, retries=1))
        try:
            await exercise(bus, device)
        finally:
            bus.close()
            await server.shutdown()

    asyncio.run(main())


def test_a_meter_profile_device_serves_its_floats_and_checks_its_range() -> None:
    """The SDM120 simulator: float32 input registers as set; a holding write outside its range is refused."""
    port = free_port()
    meter = ProfileDevice(3, shipped_profile("sdm120"), {"voltage": 231.5, "import_energy": 1234.25})

    async def main() -> None:
        async with serve_devices([meter], port):
            bus = ModbusTcpBus(BusConfig(name="m", type="tcp", host="127.0.0.1", port=port, timeout=2))
            try:
                regmap = load_role("sdm120")
                blocks = await bus.read_node(3, regmap)
                values = {reg.name: reg.value(raw) for reg, raw in plan_for(regmap).decode(blocks)}
                assert (values["voltage"], values["import_energy"]) == (231.5, 1234.25)
                assert blocks[INPUT][0] == 0 and len(blocks[INPUT][1]) == 80
                width = regmap["pulse_width"]
                await bus.write(3, width.address, width.words(100.0))
                assert meter.value("pulse_width") == 100.0
                with pytest.raises(NodeError) as refused:
                    await bus.write(3, width.address, width.words(500.0))
                assert refused.value.code == 3
                assert meter.value("pulse_width") == 100.0
            finally:
                bus.close()

    asyncio.run(main())


def test_the_simulator_runs_as_a_process_with_a_wired_input() -> None:
    """``python -m tools.sim.profile_device``: says where it listens, serves, and stops on SIGTERM."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.sim.profile_device", "--profile", "relay8", "--units", "4,5",
         "--port", str(port), "--mirror", "input_1=relay_1"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"port": port, "units": [4, 5], "profile": "relay8"}

        async def main() -> None:
            bus = ModbusTcpBus(BusConfig(name="r", type="tcp", host="127.0.0.1", port=port, timeout=5))
            try:
                await bus.write_coils(5, 0, [1])
                assert (await bus.read_table(5, load_role("relay8"), DISCRETE))[1][0] == 1
                assert (await bus.read_table(4, load_role("relay8"), DISCRETE))[1][0] == 0
            finally:
                bus.close()

        asyncio.run(main())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
