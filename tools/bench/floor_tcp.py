"""The bare floor on Modbus TCP: pymodbus reads + cbor2 + aiomqtt QoS 1 publishes, nothing else.

Same work as the gateway on the same simulators: every node's register tables
are read (one request per table, as the gateway's register merging does) and
one message per node poll is published with QoS 1. ``--connections`` pymodbus
clients per simulator port each poll their share of the units round robin, as
fast as they can, so the floor has the same concurrency as a gateway bus with
that ``concurrency``. No register map decoding, no SenML, no queue, no state.

Run as ``python -m tools.bench.floor_tcp --ports 15020,15021 --units 50 --port 1883``;
it runs until SIGTERM and then prints one JSON line with its counts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import time

import aiomqtt
import cbor2
from pymodbus.client import AsyncModbusTcpClient

from protocols.regmap import HOLDING, INPUT
from protocols.roles import load


async def _poller(
    mqtt: aiomqtt.Client, port: int, units: list[int], counts: dict[str, int], stop: asyncio.Event
) -> None:
    rmap = load("lamp")
    blocks = [(t, s, c) for t in (HOLDING, INPUT) for s, c in rmap.blocks(t)]
    registers = len(rmap.registers)
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
    await client.connect()
    try:
        while not stop.is_set():
            for unit in units:
                words: list[int] = []
                try:
                    for table, start, count in blocks:
                        if table == HOLDING:
                            rr = await client.read_holding_registers(start, count=count, device_id=unit)
                        else:
                            rr = await client.read_input_registers(start, count=count, device_id=unit)
                        words += rr.registers
                except Exception:  # the floor only counts failures
                    counts["errors"] += 1
                    continue
                await mqtt.publish(f"floor/{port}/{unit}", cbor2.dumps([unit, time.time(), words]), qos=1)
                counts["readings"] += registers
    finally:
        client.close()


async def floor_loop(ports: list[int], units: int, connections: int, host: str, broker_port: int) -> dict[str, int]:
    """Poll every unit of every port until SIGTERM; return the counts."""
    counts = {"readings": 0, "errors": 0}
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with aiomqtt.Client(host, broker_port, identifier="streetedge-floor-tcp") as mqtt:
        tasks = [
            asyncio.create_task(_poller(mqtt, port, list(range(1 + k, units + 1, connections)), counts, stop))
            for port in ports
            for k in range(connections)
        ]
        await stop.wait()
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await asyncio.gather(*tasks, return_exceptions=True)
    return counts


def main() -> None:
    """Command-line entry of the TCP floor."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ports", required=True, help="comma-separated simulator ports")
    p.add_argument("--units", type=int, required=True, help="units 1..N on every port")
    p.add_argument("--connections", type=int, default=4, help="clients per port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="broker port")
    a = p.parse_args()
    ports = [int(x) for x in a.ports.split(",")]
    print(json.dumps(asyncio.run(floor_loop(ports, a.units, a.connections, a.host, a.port))))


if __name__ == "__main__":
    main()
