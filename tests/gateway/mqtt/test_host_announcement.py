"""A consumer's announcement on streetedge/v1/host brings every birth again, live (retained births may not reach it).

Real parts: Mosquitto, a pymodbus lamp on a pty pair, an SQLite outbox, paho as the consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import cbor2
import pytest

from gateway.mqtt.topics import HOST, announcement, announces_online
from gateway.service.config import ConfigError, parse_config
from gateway.service.daemon import Gateway


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    task = asyncio.create_task(gateway.run())
    try:
        deadline = time.monotonic() + 30
        while not gateway.stats.broker_connected:
            assert time.monotonic() < deadline and not task.done(), "gateway did not connect"
            await asyncio.sleep(0.02)
        yield gateway
    finally:
        gateway.stop()
        async with asyncio.timeout(30):
            await task


def test_an_announcement_brings_the_births_again(mosquitto, pty_pair, sim, subscriber, tmp_path) -> None:
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url, extra=f'[delivery]\noutbox = "{tmp_path / "o.db"}"\n')
    gateway = Gateway(config)

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            consumer = subscriber(mosquitto.host, mosquitto.port, gateway.topics.birth + "/#")
            await consumer.wait(lambda m: m.retain and m.topic == gateway.topics.birth)  # the retained copy
            consumer.publish(HOST, b"\xff not cbor")  # ignored, and the gateway stays up
            consumer.publish(HOST, cbor2.dumps({"online": False}))  # asks for nothing
            consumer.publish(HOST, announcement("platform/1"))
            again = await consumer.wait(lambda m: not m.retain and m.topic == gateway.topics.birth, within=30)
            node = await consumer.wait(lambda m: not m.retain and m.topic.endswith("/lamp-1"), within=30)
            assert cbor2.loads(again.payload)["seq"] == 0
            assert cbor2.loads(node.payload)["node"] == "lamp-1"
            assert gateway.stats.broker_connects == 1  # no reconnection on the way
            with pytest.raises(AssertionError):  # one announcement, one gateway birth: not two
                await consumer.wait(lambda m: not m.retain and m.topic == gateway.topics.birth, within=1)

    asyncio.run(main())


def test_announcement_payloads() -> None:
    assert announces_online(announcement("platform/a1"))
    assert cbor2.loads(announcement("x")) == {"online": True, "id": "x"}
    assert not announces_online(cbor2.dumps({"online": False}))
    assert not announces_online(cbor2.dumps({"online": 1}))
    assert not announces_online(cbor2.dumps([True]))
    assert not announces_online(b"")
    assert not announces_online(b"\xff")


def test_a_persistent_session_needs_mqtt_3_1_1() -> None:
    base = 'site = "s"\ngateway = "g"\n[broker]\nurl = "mqtt://127.0.0.1:1883"\nsession = "persistent"\n'
    with pytest.raises(ConfigError, match=r"broker\.session.*3\.1\.1"):
        parse_config(base, source="t.toml")
    assert parse_config(base + 'protocol = "3.1.1"\n', source="t.toml").broker.session == "persistent"
