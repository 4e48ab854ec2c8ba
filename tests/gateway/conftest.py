"""Real parts for gateway tests: a socat pty pair, a pymodbus-simulated lamp, a paho subscriber.

The broker comes from tests/conftest.py (``mosquitto``). Helpers are handed to
tests through fixtures because test directories are not importable packages.
Missing system tools make tests FAIL with a message, never skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.service.config import Config, parse_config
from protocols.errors import ModbusException
from protocols.regmap import HOLDING, INPUT
from protocols.roles import load

LAMP = load("lamp")


class SimLamp:
    """A lamp node simulated by pymodbus, its registers laid out by the lamp register map.

    ``holding`` holds the raw holding words (dim_level, relay) and is the truth:
    writes land there after the register map's own write check; ``values``
    holds the engineering values of the input registers; ``seq`` grows on every
    input read that includes it. Set ``fail`` to make the node answer every request with
    exception 4 (device failure), ``silent`` to make it answer nothing.
    """

    def __init__(self, unit: int, **values: Any) -> None:
        self.unit = unit
        self.values: dict[str, Any] = {
            "seq": 1000, "power": 41.5, "voltage": 230.1, "current": 0.181, "energy": 123456,
            "temperature": -5.5, "status": 1, "uptime": 3600, "role": 1, "firmware": 0x0100,
        }
        dim = values.pop("dim_level", 100)
        relay = values.pop("relay", True)
        self.values.update(values)
        # Every holding register at its lowest valid value, then the two a command changes.
        self.holding = [0] * LAMP.size(HOLDING)
        for reg in LAMP.registers:
            if reg.table == HOLDING:
                low = max(reg.minimum, 0) if reg.maximum >= 0 else reg.minimum
                self.holding[reg.address : reg.address + reg.width] = reg.words(low)
        self.holding[LAMP["dim_level"].address] = int(dim)
        self.holding[LAMP["relay"].address] = int(relay)
        self.writes: list[tuple[int, list[int]]] = []
        self.reads = 0
        self.fail = False
        self.silent = False

    def input_words(self) -> list[int]:
        words = [0] * (max(r.address + r.width for r in LAMP.registers if r.table == INPUT))
        for reg in LAMP.registers:
            if reg.table == INPUT and reg.name in self.values:  # the rest read as 0
                for i, w in enumerate(reg.words(reg.to_raw(self.values[reg.name]))):
                    words[reg.address + i] = w
        if self.values["firmware"] >= LAMP.mirrors_since:  # as the lamp firmware since 1.1 (protocols/roles/lamp.py)
            for name, at in LAMP.mirrors.items():
                words[at] = self.holding[LAMP[name].address]
        return words

    async def action(
        self, fc: int, start: int, address: int, count: int, registers: list[int], values: Any
    ) -> ExcCodes | None:
        if self.fail:
            return ExcCodes.DEVICE_FAILURE
        if fc == 4:
            if address <= LAMP["seq"].address < address + count:  # a new sample for each read of it
                self.seq_step()
            words = self.input_words()
            registers[: len(words)] = words
        elif fc == 3 or (fc == 23 and values is None):  # pymodbus runs a 23 as its write, then its read
            registers[: len(self.holding)] = self.holding
            self.reads += 1
        elif fc in (6, 16, 23):
            new = [int(v) for v in values]
            try:
                LAMP.check_write(address, new, len(new))
            except ModbusException as exc:
                return ExcCodes(exc.code)
            self.holding[address : address + len(new)] = new
            self.writes.append((address, new))
        return None

    def seq_step(self) -> None:
        self.values["seq"] += 1
        self.values["uptime"] += 1

    def device(self) -> SimDevice:
        size = len(self.input_words())
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(
            self.unit,
            simdata=(
                bits,
                list(bits),
                [SimData(0, values=list(self.holding), datatype=DataType.REGISTERS)],
                [SimData(0, values=[0] * size, datatype=DataType.REGISTERS)],
            ),
            action=self.action,
        )


class Sim:
    """What the gateway tests use to build their world."""

    lamp = SimLamp
    holding_table = HOLDING

    @staticmethod
    @contextlib.asynccontextmanager
    async def serve(path: str, lamps: list[SimLamp]) -> AsyncIterator[ModbusSerialServer]:
        """A pymodbus RTU server for ``lamps`` on serial ``path`` (8N1: ptys refuse parity).

        Units without a lamp, and silent lamps, send no answer at all (as on a real line).
        """
        by_unit = {lamp.unit: lamp for lamp in lamps}

        def trace(sending: bool, data: bytes) -> bytes:
            if sending and data:
                lamp = by_unit.get(data[0])
                if lamp is None or lamp.silent:
                    return b""  # swallow the answer
            return data

        server = ModbusSerialServer(
            [lamp.device() for lamp in lamps],
            port=path,
            baudrate=19200,
            parity="N",
            broadcast_enable=True,
            trace_packet=trace,
        )
        await server.serve_forever(background=True)
        try:
            yield server
        finally:
            await server.shutdown()

    @staticmethod
    def config(
        device: str,
        broker_url: str = "mqtt://127.0.0.1:1",
        *,
        units: dict[str, int] | None = None,
        protocol: str = "5",
        groups: dict[str, list[str]] | None = None,
        interval: float = 0.2,
        timeout: float = 0.3,
        retries: int = 1,
        extra: str = "",
    ) -> Config:
        """A gateway configuration with one bus on ``device`` and lamp nodes by unit."""
        units = units or {"lamp-1": 1}
        lines = [
            'site = "test-site"', 'gateway = "gw-1"', "[broker]", f'url = "{broker_url}"',
            f'protocol = "{protocol}"', "keepalive = 10", "[[bus]]", 'name = "bus0"',
            f'device = "{device}"', 'parity = "N"', f"timeout = {timeout}", f"retries = {retries}",
        ]
        for node_id, unit in units.items():
            lines += ["[[node]]", f'id = "{node_id}"', 'bus = "bus0"', f"unit = {unit}",
                      f"interval = {interval}"]
        lines.append(extra)
        if groups:
            lines.append("[groups]")
            lines += [f'"{g}" = {json.dumps(ms)}' for g, ms in groups.items()]
        return parse_config("\n".join(lines), source="test.toml")


@pytest.fixture
def sim() -> type[Sim]:
    """Builders for simulated lamps, their server and gateway configurations."""
    return Sim


class Subscriber:
    """An independent MQTT client (paho) that records what arrives."""

    def __init__(self, host: str, port: int, topic: str, *, protocol: str = "5") -> None:
        version = paho.MQTTv5 if protocol == "5" else paho.MQTTv311
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=version)
        self.messages: queue.Queue[paho.MQTTMessage] = queue.Queue()
        self.seen: list[paho.MQTTMessage] = []
        subscribed = queue.Queue[bool]()
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = lambda *_a: subscribed.put(True)
        self.client.connect(host, port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        subscribed.get(timeout=10)

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        """Publish QoS 1 from paho's own thread (does not block the caller's event loop)."""
        self.client.publish(topic, payload, qos=1, retain=retain)

    async def wait(
        self, match: Callable[[paho.MQTTMessage], bool], within: float = 15.0
    ) -> paho.MQTTMessage:
        """The first message (already seen or arriving within ``within`` s) that ``match`` accepts.

        Polls without blocking, so a gateway running in the same event loop keeps going.
        """
        for msg in self.seen:
            if match(msg):
                self.seen.remove(msg)
                return msg
        deadline = time.monotonic() + within
        while True:
            try:
                msg = self.messages.get_nowait()
            except queue.Empty:
                assert time.monotonic() < deadline, "no matching MQTT message arrived in time"
                await asyncio.sleep(0.01)
                continue
            if match(msg):
                return msg
            self.seen.append(msg)

    def close(self) -> None:
        # Disconnect first: it wakes paho's thread, which would otherwise sleep out its 1 s select.
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def subscriber() -> Iterator[Callable[..., Subscriber]]:
    """``subscriber(host, port, topic, protocol="5")`` -> a connected Subscriber (closed after the test)."""
    made: list[Subscriber] = []

    def make(host: str, port: int, topic: str, *, protocol: str = "5") -> Subscriber:
        sub = Subscriber(host, port, topic, protocol=protocol)
        made.append(sub)
        return sub

    yield make
    for sub in made:
        sub.close()

