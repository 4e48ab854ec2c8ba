"""The uplink's publish queue (bounded, drop-oldest, urgent lane) and its recovery from a failed publish."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.mqtt.connection import Connection
from gateway.mqtt.topics import Topics
from gateway.mqtt.uplink import MqttError, Outgoing, PublishQueue, Uplink
from gateway.service.config import BrokerConfig
from gateway.service.stats import GatewayStats


def msg(i: int, *, urgent: bool = False) -> Outgoing:
    return Outgoing(f"t/{i}", b"%d" % i, records=0 if urgent else 1, urgent=urgent)


def test_full_queue_drops_the_oldest_and_counts() -> None:
    """When full, the oldest message goes and on_drop hears about it."""
    dropped: list[Outgoing] = []

    async def main() -> list[Outgoing | None]:
        q = PublishQueue(3, on_drop=dropped.append)
        for i in range(5):
            q.put(msg(i))
        assert len(q) == 3
        q.close()
        return [await q.get() for _ in range(4)]

    got = asyncio.run(main())
    assert [m.topic if m else None for m in got] == ["t/2", "t/3", "t/4", None]
    assert [m.topic for m in dropped] == ["t/0", "t/1"]


def test_urgent_lane_first_and_not_pushed_out_by_telemetry() -> None:
    """Command results overtake queued telemetry and survive a flood of it."""

    async def main() -> list[str]:
        q = PublishQueue(2)
        q.put(msg(1))
        q.put(msg(100, urgent=True))
        for i in range(2, 10):
            q.put(msg(i))
        q.close()
        out = []
        while (m := await q.get()) is not None:
            out.append(m.topic)
        return out

    assert asyncio.run(main()) == ["t/100", "t/8", "t/9"]


def test_put_back_goes_to_the_front() -> None:
    """An unacknowledged message is the next one out."""

    async def main() -> str | None:
        q = PublishQueue(5)
        q.put(msg(1))
        q.put_back(msg(0))
        got = await q.get()
        return got.topic if got else None

    assert asyncio.run(main()) == "t/0"


def test_get_waits_for_a_message() -> None:
    """get() blocks until something is queued."""

    async def main() -> str | None:
        q = PublishQueue(5)
        waiter = asyncio.create_task(q.get())
        await asyncio.sleep(0.01)
        assert not waiter.done()
        q.put(msg(7))
        got = await asyncio.wait_for(waiter, 5)
        return got.topic if got else None

    assert asyncio.run(main()) == "t/7"


def test_queue_size_must_be_positive() -> None:
    """A queue of no room is a configuration mistake."""
    with pytest.raises(ValueError, match="maxsize"):
        PublishQueue(0)


def test_failed_publish_reconnects_and_sends_the_message_again(mosquitto, subscriber, monkeypatch) -> None:
    """A publish that fails ends the session; after reconnecting the message is delivered."""
    real_publish = Connection.publish
    failures = {"left": 1}

    async def flaky_publish(self: Connection, topic: str, *args: Any, **kwargs: Any) -> None:
        if "/data/" in topic and failures["left"]:
            failures["left"] -= 1
            raise MqttError("simulated publish failure")
        await real_publish(self, topic, *args, **kwargs)

    monkeypatch.setattr(Connection, "publish", flaky_publish)
    topics = Topics("s", "g")
    stats = GatewayStats()
    sub = subscriber(mosquitto.host, mosquitto.port, topics.data("n1"))

    async def main() -> None:
        uplink = Uplink(BrokerConfig(url=mosquitto.url, client_id="uplink-test"), topics, stats, lambda _: None)
        task = asyncio.create_task(uplink.run())
        await asyncio.wait_for(uplink.connected.wait(), 20)
        uplink.publish(topics.data("n1"), b"pack", records=5)
        got = await sub.wait(lambda m: True, within=30)
        assert got.payload == b"pack"
        assert stats.broker_connects == 2
        assert (stats.packs_queued, stats.packs_acked, stats.readings_acked) == (1, 1, 5)
        uplink.shutdown(1.0)
        await asyncio.wait_for(task, 20)

    asyncio.run(main())
    assert failures["left"] == 0


def test_take_data_removes_only_data_messages_in_order() -> None:
    """At the end of a session the data messages (they carry outbox ids) leave the queue; the rest stays."""

    async def main() -> tuple[list[str], list[str]]:
        q = PublishQueue(10)
        q.put(Outgoing("d/1", b"", entries=(1, 2)))
        q.put(Outgoing("audit", b""))
        q.put(Outgoing("d/2", b"", entries=(3,)))
        q.put(Outgoing("result", b"", urgent=True))
        data = [m.topic for m in q.take_data()]
        q.close()
        rest = []
        while (m := await q.get()) is not None:
            rest.append(m.topic)
        return data, rest

    assert asyncio.run(main()) == (["d/1", "d/2"], ["result", "audit"])
