"""The bare floor: pymodbus read + cbor2 encode + aiomqtt QoS 1 publish, nothing else.

It polls the same register blocks of the same nodes as the gateway and publishes
one message per node poll, so the gateway's cost per reading can be stated as a
ratio of this loop's. Run as ``python -m tools.bench.floor``; it prints one JSON
line with its counts when its time is up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import aiomqtt
import cbor2
from pymodbus.client import AsyncModbusSerialClient

from protocols.regmap import HOLDING, INPUT
from protocols.roles import load


async def floor_loop(
    device: str, baud: int, units: list[int], host: str, port: int, protocol: str, seconds: float
) -> dict[str, float]:
    """Poll ``units`` round-robin for ``seconds``; return readings and errors."""
    rmap = load("lamp")
    blocks = [(t, s, c) for t in (HOLDING, INPUT) for s, c in rmap.blocks(t)]
    registers = len(rmap.registers)
    version = aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311
    modbus = AsyncModbusSerialClient(port=device, baudrate=baud, timeout=0.3, retries=0)
    await modbus.connect()
    readings = 0
    errors = 0
    async with aiomqtt.Client(host, port, protocol=version, identifier="streetedge-floor") as mqtt:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for unit in units:
                words: list[int] = []
                try:
                    for table, start, count in blocks:
                        if table == HOLDING:
                            rr = await modbus.read_holding_registers(start, count=count, device_id=unit)
                        else:
                            rr = await modbus.read_input_registers(start, count=count, device_id=unit)
                        words += rr.registers
                except Exception:
                    errors += 1
                    continue
                await mqtt.publish(f"floor/{unit}", cbor2.dumps([unit, time.time(), words]), qos=1)
                readings += registers
    modbus.close()
    return {"readings": readings, "errors": errors}


def main() -> None:
    """Command-line entry of the floor loop."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", required=True)
    p.add_argument("--baud", type=int, default=19200)
    p.add_argument("--units", required=True, help="comma-separated unit ids")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--protocol", default="5")
    p.add_argument("--seconds", type=float, default=10)
    a = p.parse_args()
    units = [int(u) for u in a.units.split(",")]
    result = asyncio.run(floor_loop(a.device, a.baud, units, a.host, a.port, a.protocol, a.seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
