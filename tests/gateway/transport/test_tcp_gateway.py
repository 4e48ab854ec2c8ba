"""The gateway on Modbus TCP, end to end with Mosquitto: an SDM630 meter (pymodbus) and lamp simulators.

The meter is pymodbus's own TCP server holding float32 values (pymodbus packs
them, high word first), so the profile is checked against an independent
encoder. A node that stops answering publishes its retained death message and,
once back, its return.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import cbor2
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.service.config import Config, parse_config
from gateway.service.daemon import Gateway
from protocols import senml
from tools.broker import free_port
from tools.sim.tcp_lamps import SimNode, TcpNodeServer

# address -> value for the float32 registers the test checks (the rest read 0.0)
METER = {0: 230.5, 2: 231.25, 4: 229.75, 6: 5.5, 52: 3815.0, 70: 50.0, 72: 12345.5}


@contextlib.asynccontextmanager
async def meter(port: int, unit: int = 1) -> AsyncIterator[ModbusTcpServer]:
    """An SDM630-like meter: 40 float32 input registers (80 words) on pymodbus's TCP server."""
    floats = [METER.get(2 * i, 0.0) for i in range(40)]
    bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
    device = SimDevice(
        unit,
        simdata=(bits, list(bits), [SimData(0, values=[0] * 4, datatype=DataType.REGISTERS)],
                 [SimData(0, values=floats, datatype=DataType.FLOAT32)]),
    )
    server = ModbusTcpServer([device], address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    try:
        yield server
    finally:
        await server.shutdown()


def config(broker_url: str, meter_port: int, lamp_port: int) -> Config:
    return parse_config(f"""
site = "s"
gateway = "g"
[broker]
url = "{broker_url}"
keepalive = 10
[http]
enabled = false
[delivery]
profile = "senml"
[[bus]]
name = "meters"
type = "tcp"
host = "127.0.0.1"
port = {meter_port}
timeout = 0.5
retries = 0
[[bus]]
name = "lamps"
type = "tcp"
host = "127.0.0.1"
port = {lamp_port}
timeout = 0.5
retries = 1
[[node]]
id = "meter-1"
bus = "meters"
unit = 1
role = "sdm630"
interval = 0.2
[[node]]
id = "lamp-1"
bus = "lamps"
unit = 1
interval = 0.1
[[node]]
id = "lamp-2"
bus = "lamps"
unit = 2
interval = 0.1
""")


def resolved(payload: bytes) -> dict[str, object]:
    records = senml.resolve(senml.from_labels(cbor2.loads(payload)))
    return {r["n"].rsplit(":", 1)[-1]: r.get("v", r.get("vb")) for r in records}


def test_meter_and_lamps_over_tcp(mosquitto, subscriber) -> None:
    """SDM630 floats arrive with their units; a silent lamp dies (retained) and returns."""
    meter_port = free_port()
    sub = subscriber(mosquitto.host, mosquitto.port, "streetedge/v1/s/g/#")

    async def main() -> None:
        async with meter(meter_port), TcpNodeServer([SimNode(1, power=33.3), SimNode(2)]) as lamps:
            gateway = Gateway(config(mosquitto.url, meter_port, lamps.port), offline_interval=0.2)
            task = asyncio.create_task(gateway.run())
            try:
                msg = await sub.wait(lambda m: m.topic.endswith("/data/meter-1"), within=30)
                values = resolved(msg.payload)
                assert values["voltage_l1"] == 230.5
                assert values["voltage_l3"] == 229.75
                assert values["power"] == 3815.0
                assert values["frequency"] == 50.0
                assert values["import_energy"] == 12345.5
                assert len(values) == 34
                records = senml.resolve(senml.from_labels(cbor2.loads(msg.payload)))
                assert {r["n"].rsplit(":", 1)[-1]: r.get("u") for r in records}["import_energy"] == "kWh"

                lamp = await sub.wait(lambda m: m.topic.endswith("/data/lamp-1"), within=30)
                assert resolved(lamp.payload)["power"] == 33.3
                born = await sub.wait(lambda m: m.topic.endswith("/node/lamp-2/state"), within=30)
                assert cbor2.loads(born.payload)["online"] is True

                lamps.nodes[2].silent = True
                dead = await sub.wait(lambda m: m.topic.endswith("/node/lamp-2/state"), within=30)
                death = cbor2.loads(dead.payload)
                assert death["online"] is False
                assert "no answer" in death["error"]
                assert gateway.stats.nodes["lamp-2"].online is False
                assert gateway.stats.nodes["lamp-1"].online is True  # its neighbour is unaffected

                lamps.nodes[2].silent = False
                back = await sub.wait(lambda m: m.topic.endswith("/node/lamp-2/state"), within=30)
                assert cbor2.loads(back.payload)["online"] is True
                assert gateway.stats.buses["lamps"].retries >= 1
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 30)

    asyncio.run(main())


def test_reload_adds_a_node_and_keeps_the_rest(mosquitto, subscriber) -> None:
    """Gateway.reload: a new node on a running bus is polled; the others keep their counters."""
    sub = subscriber(mosquitto.host, mosquitto.port, "streetedge/v1/s/g/data/#")

    async def main() -> None:
        async with TcpNodeServer([SimNode(1), SimNode(2), SimNode(3)]) as lamps:
            first = parse_config(_lamps_only(lamps.port, mosquitto.url, units=(1, 2)))
            gateway = Gateway(first)
            task = asyncio.create_task(gateway.run())
            try:
                await sub.wait(lambda m: m.topic.endswith("/lamp-2"), within=30)
                polls_before = gateway.stats.nodes["lamp-1"].polls
                changes = await gateway.reload(parse_config(
                    _lamps_only(lamps.port, mosquitto.url, units=(1, 2, 3))))
                assert changes == ["nodes of bus lamps changed"]
                await sub.wait(lambda m: m.topic.endswith("/lamp-3"), within=30)
                assert gateway.stats.nodes["lamp-1"].polls >= polls_before
                notes = await gateway.reload(parse_config(
                    _lamps_only(lamps.port, mosquitto.url, units=(1, 2, 3)).replace('"s"', '"t"', 1)))
                # the client id derives from the site, so the broker settings change with it
                assert notes == ["site changed: takes effect after a restart",
                                 "broker changed: takes effect after a restart"]
                assert gateway.config.site == "s"
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 30)

    asyncio.run(main())


def _lamps_only(port: int, url: str, units: tuple[int, ...]) -> str:
    nodes = "".join(
        f'[[node]]\nid = "lamp-{u}"\nbus = "lamps"\nunit = {u}\ninterval = 0.1\n' for u in units
    )
    return (
        f'site = "s"\ngateway = "g"\n[broker]\nurl = "{url}"\nkeepalive = 10\n[http]\nenabled = false\n'
        '[delivery]\nprofile = "senml"\n'
        f'[[bus]]\nname = "lamps"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {port}\n' + nodes
    )
