"""One uplink connection (paho driven from asyncio) against a real Mosquitto, checked by an independent paho client."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from typing import Literal

import pytest

from gateway.mqtt.connection import Connection, MqttError, PublishRefused, Will
from tools.broker import LocalBroker, free_port

ALLOWED = "allowed/"  # ACL_ALLOWED of tests/conftest.py: the acl_broker lets anonymous clients publish only here


def connection(
    port: int,
    *,
    will: Will | None = None,
    on_message: Callable[[str, bytes], None] = lambda _t, _p: None,
    protocol: Literal["5", "3.1.1"] = "5",
    client_id: str = "",
) -> Connection:
    return Connection("127.0.0.1", port, client_id=client_id, protocol=protocol, keepalive=10, will=will,
                      tls=None, window=8, on_message=on_message)


def test_a_refused_publish_raises_publish_refused_and_the_connection_goes_on(acl_broker) -> None:
    """MQTT 5: a PUBACK with 0x87 is PublishRefused (the records stay in the outbox); others still go through."""

    async def main() -> None:
        conn = connection(acl_broker.port)
        await conn.connect()
        await conn.publish(ALLOWED + "data", b"1")
        with pytest.raises(PublishRefused) as refused:
            await conn.publish("elsewhere/data", b"2")
        assert refused.value.topic == "elsewhere/data"
        assert "authori" in refused.value.reason.lower()
        await conn.publish(ALLOWED + "data", b"3")
        await conn.disconnect(5)
        await conn.wait_closed()  # closed by us: no error

    asyncio.run(main())


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_abort_leaves_the_will_to_the_broker(protocol, mosquitto, subscriber) -> None:
    """Dropped without DISCONNECT, the connection's Will is published by the broker."""
    sub = subscriber(mosquitto.host, mosquitto.port, "gw/state")

    async def main() -> None:
        conn = connection(mosquitto.port, will=Will("gw/state", b"dead"), protocol=protocol)
        await conn.connect()
        await conn.publish("gw/state", b"alive", retain=True)
        conn.abort()
        with pytest.raises(MqttError):
            await conn.wait_closed()
        assert (await sub.wait(lambda m: m.payload == b"alive")).retain is False
        will = await sub.wait(lambda m: m.payload != b"alive")
        assert will.payload == b"dead"

    asyncio.run(main())


def test_disconnect_discards_the_will(mosquitto, subscriber) -> None:
    """A graceful close: the broker drops the Will (what a stopping gateway relies on after saying offline)."""
    sub = subscriber(mosquitto.host, mosquitto.port, "gw/state")

    async def main() -> None:
        conn = connection(mosquitto.port, will=Will("gw/state", b"dead"))
        await conn.connect()
        await conn.disconnect(5)
        await conn.wait_closed()
        sub.publish("gw/state", b"marker")  # a Will would have arrived before this
        assert (await sub.wait(lambda m: True)).payload == b"marker"

    asyncio.run(main())


def test_a_broker_that_goes_away_ends_the_connection_with_an_error() -> None:
    """The broker stops: wait_closed() raises, and a publish after that fails at once instead of hanging."""

    async def main() -> None:
        with LocalBroker("mosquitto") as broker:
            conn = connection(broker.port)
            await conn.connect()
            await conn.publish("t", b"1")
        with pytest.raises(MqttError, match="lost"):
            await conn.wait_closed()
        with pytest.raises(MqttError):
            await conn.publish("t", b"2")

    asyncio.run(main())


def test_nobody_listening_is_an_mqtt_error() -> None:
    async def main() -> None:
        with pytest.raises(MqttError, match="ConnectionRefused"):
            await connection(free_port()).connect()

    asyncio.run(main())


def test_messages_reach_the_handler_and_a_failing_handler_keeps_the_connection(mosquitto, subscriber) -> None:
    """Commands arrive through on_message; a handler that raises is logged, not fatal."""
    sub = subscriber(mosquitto.host, mosquitto.port, "unused")
    got: list[tuple[str, bytes]] = []
    both = asyncio.Event()

    def handler(topic: str, payload: bytes) -> None:
        got.append((topic, payload))
        if len(got) == 2:
            both.set()
        if payload == b"boom":
            raise RuntimeError("a handler bug")

    async def main() -> None:
        conn = connection(mosquitto.port, on_message=handler)
        await conn.connect()
        assert await conn.subscribe("gw/cmd")
        sub.publish("gw/cmd", b"boom")
        sub.publish("gw/cmd", b"dim")
        async with asyncio.timeout(30):
            await both.wait()
        assert got == [("gw/cmd", b"boom"), ("gw/cmd", b"dim")]
        await conn.publish("gw/result", b"done")  # still connected
        await conn.disconnect(5)

    asyncio.run(main())


def test_cancelled_while_waiting_for_connack_leaves_no_connection_behind() -> None:
    """A server that takes CONNECT and never answers; cancelling connect() closes our end of the socket."""

    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        loop = asyncio.get_running_loop()
        attempt = asyncio.create_task(connection(listener.getsockname()[1]).connect())
        peer, _ = await loop.sock_accept(listener)
        first = await loop.sock_recv(peer, 1)
        assert first == b"\x10"  # CONNECT
        attempt.cancel()
        with pytest.raises(asyncio.CancelledError):
            await attempt
        async with asyncio.timeout(30):
            while await loop.sock_recv(peer, 4096):  # the rest of CONNECT, then the end of the stream
                pass
        peer.close()
        listener.close()

    asyncio.run(main())


def test_disconnect_is_bounded_when_the_broker_stalls(caplog) -> None:
    """A broker that stops reading (paused) never takes our DISCONNECT behind a large publish: after the
    bound the connection is dropped instead of waiting forever (its Will is then the broker's to publish)."""

    async def main() -> None:
        with LocalBroker("mosquitto") as broker:
            assert broker.pid is not None
            conn = connection(broker.port)
            await conn.connect()
            os.kill(broker.pid, signal.SIGSTOP)
            try:
                # Larger than both sockets' buffers: paho still has bytes to write when DISCONNECT is queued.
                stuck = asyncio.create_task(conn.publish("big", bytes(32 * 1024 * 1024)))
                await asyncio.sleep(0)
                await conn.disconnect(0.5)
                async with asyncio.timeout(60):
                    with pytest.raises(MqttError):
                        await stuck  # failed by the dropped connection, not left waiting
                    await conn.wait_closed()  # closed on our initiative: no error
            finally:
                os.kill(broker.pid, signal.SIGCONT)

    asyncio.run(main())
    assert "did not take our DISCONNECT" in caplog.text
