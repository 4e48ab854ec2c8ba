"""``[broker] session = "persistent"`` (MQTT 3.1.1): the broker keeps the command subscription between connections.

Real parts: Mosquitto and an independent paho client publishing the command (the RabbitMQ cluster test,
tests/cluster, shows why a clustered broker needs it).
"""

from __future__ import annotations

import asyncio

from gateway.mqtt.connection import Connection


def connection(port: int, received: list[tuple[str, bytes]], *, clean: bool,
               arrived: asyncio.Event | None = None) -> Connection:
    def on_message(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        if arrived is not None:
            arrived.set()

    return Connection("127.0.0.1", port, client_id="streetedge-s-persistent", protocol="3.1.1", keepalive=10,
                      will=None, tls=None, window=8, on_message=on_message, clean=clean)


def test_a_command_sent_while_away_arrives_at_the_next_connection(mosquitto, subscriber) -> None:
    operator = subscriber(mosquitto.host, mosquitto.port, "unused/#")
    received: list[tuple[str, bytes]] = []

    async def main() -> None:
        arrived = asyncio.Event()
        first = connection(mosquitto.port, received, clean=False)
        await first.connect()
        assert await first.subscribe("s/gw/cmd")
        await first.disconnect(5)
        # QoS 1, and this connection subscribes to nothing: only the kept session can bring it.
        operator.publish("s/gw/cmd", b"dim while away")
        again = connection(mosquitto.port, received, clean=False, arrived=arrived)
        await again.connect()
        assert again.session_present
        async with asyncio.timeout(15):
            await arrived.wait()
        assert received == [("s/gw/cmd", b"dim while away")]
        await again.disconnect(5)
        fresh = connection(mosquitto.port, received, clean=True)  # a clean session drops what the broker kept
        await fresh.connect()
        assert not fresh.session_present
        await fresh.disconnect(5)

    asyncio.run(main())
