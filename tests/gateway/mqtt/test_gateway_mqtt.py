"""The whole gateway against Mosquitto and a pymodbus-simulated lamp, checked by an independent paho client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.service.daemon import Gateway
from protocols import senml
from tools.broker import LocalBroker
from tools.keys import key_entry, public_text
from tools.operator import Signer, build_command

OPERATOR = Signer(Ed25519PrivateKey.generate(), "ops")
SENML = '[delivery]\nprofile = "senml"\n'
"""These tests read one SenML pack per poll on <root>/data/<node>: the senml profile, not the default."""


def trusted(state: Path) -> str:
    """Configuration lines that make the gateway trust OPERATOR, with its state under ``state``."""
    return (f'[commands]\nreplay_db = "{state / "replay.sqlite"}"\naudit_log = "{state / "audit.jsonl"}"\n'
            + key_entry("ops", public_text(OPERATOR.key), ["*"], ["*"]))


def signed(command: dict[str, Any]) -> bytes:
    """An old-style command map (parameters beside id/target/action) as OPERATOR's signed envelope."""
    params = {k: v for k, v in command.items() if k not in ("id", "target", "action")}
    return OPERATOR.sign(build_command(command["target"], command["action"], params, command["id"]))


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    """Run the gateway until the block ends; fail if it does not connect or stop in time."""
    task = asyncio.create_task(gateway.run())
    try:
        async with asyncio.timeout(20):
            while not gateway.stats.broker_connected:
                if task.done():
                    task.result()
                await asyncio.sleep(0.01)
        yield gateway
    finally:
        gateway.stop()
        async with asyncio.timeout(20):
            await task


def decode_pack(payload: bytes) -> dict[str, dict[str, Any]]:
    """SenML-CBOR -> resolved records by full name."""
    pack = senml.from_labels(cbor2.loads(payload))
    return {r["n"]: r for r in senml.resolve(pack)}


def test_readings_arrive_as_senml_cbor(mosquitto, pty_pair, sim, subscriber) -> None:
    """Each poll of a lamp arrives as a SenML-CBOR pack with the right names, units and values."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1, dim_level=40, power=41.5, temperature=-5.5, energy=123456)
    config = sim.config(gw_end, mosquitto.url, units={"lamp-1": 1}, extra=SENML)
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.data("#").replace("/#", "/+"))
    prefix = "urn:dev:streetedge:test-site:lamp-1:"

    async def main() -> None:
        async with sim.serve(node_end, [lamp]), running(gateway):
            first = await sub.wait(lambda m: m.topic == gateway.topics.data("lamp-1"))
            second = await sub.wait(lambda m: m.topic == gateway.topics.data("lamp-1"))
        records = decode_pack(first.payload)
        assert records[prefix + "dim_level"]["v"] == 40
        assert records[prefix + "dim_level"]["u"] == "%"
        assert records[prefix + "relay"]["vb"] is True
        assert records[prefix + "power"] == {"n": prefix + "power", "u": "W", "v": 41.5,
                                             "t": records[prefix + "power"]["t"]}
        assert records[prefix + "temperature"]["v"] == -5.5
        assert records[prefix + "temperature"]["u"] == "Cel"
        assert records[prefix + "energy"]["v"] == 123456
        assert "u" not in records[prefix + "seq"]
        assert first.qos == 1
        later = decode_pack(second.payload)
        assert later[prefix + "seq"]["v"] > records[prefix + "seq"]["v"]
        assert later[prefix + "seq"]["t"] >= records[prefix + "seq"]["t"]
        assert gateway.stats.packs_acked >= 2
        assert gateway.stats.readings_acked >= 2 * len(records)

    asyncio.run(main())


def test_birth_state_is_retained_and_turns_offline_on_stop(mosquitto, pty_pair, sim, subscriber) -> None:
    """A retained {"online": true} on connect; a clean stop leaves {"online": false} retained."""
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url)
    gateway = Gateway(config)

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]):
            async with running(gateway):
                late = subscriber(mosquitto.host, mosquitto.port, gateway.topics.state)
                birth = await late.wait(lambda m: True)
                assert birth.retain  # delivered from the broker's retained store
                state = cbor2.loads(birth.payload)
                assert state["online"] is True
                assert state["ts"] > 1.7e9
            after = subscriber(mosquitto.host, mosquitto.port, gateway.topics.state)
            death = await after.wait(lambda m: True)
            assert cbor2.loads(death.payload)["online"] is False

    asyncio.run(main())


@pytest.mark.parametrize(("settle", "offline_timeout"), [(0.0, None), (0.5, None), (0.5, 0.0)])
def test_cancelled_gateway_still_says_offline(
    mosquitto, pty_pair, sim, subscriber, monkeypatch, settle, offline_timeout
) -> None:
    """Cancelled outright (a crash elsewhere, a hard stop): the retained state still ends offline.

    Cancelled at once (births and subscription still going on) or once running; with no time
    to publish the offline state itself (timeout 0) the gateway drops the connection and the
    broker's Will says it.
    """
    if offline_timeout is not None:
        monkeypatch.setattr("gateway.mqtt.uplink.OFFLINE_TIMEOUT", offline_timeout)
    gw_end, node_end = pty_pair
    gateway = Gateway(sim.config(gw_end, mosquitto.url))
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.state)

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]):
            task = asyncio.create_task(gateway.run())
            await sub.wait(lambda m: cbor2.loads(m.payload)["online"] is True)
            await asyncio.sleep(settle)
            task.cancel()
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 60)
            await sub.wait(lambda m: cbor2.loads(m.payload)["online"] is False)
        # What a consumer connecting later sees: the retained state, offline, naming the session.
        late = subscriber(mosquitto.host, mosquitto.port, gateway.topics.state)
        retained = cbor2.loads((await late.wait(lambda m: True)).payload)
        assert retained["online"] is False
        assert retained["session"] == gateway.uplink.session

    asyncio.run(main())


def test_dim_command_gets_done_and_changes_the_register(mosquitto, pty_pair, sim, subscriber, tmp_path) -> None:
    """A dim command published by paho is executed, confirmed and answered 'done'."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)
    config = sim.config(gw_end, mosquitto.url, extra=trusted(tmp_path))
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.result)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]), running(gateway):
            command = {"id": "dim-1", "target": "lamp-1", "action": "dim", "level": 25}
            sub.publish(gateway.topics.cmd, signed(command))
            msg = await sub.wait(lambda m: True)
        result = cbor2.loads(msg.payload)
        assert result["id"] == "dim-1"
        assert result["status"] == "done", result
        assert result["confirmed"] == ["lamp-1"]
        assert result["unconfirmed"] == []
        assert "reason" not in result
        assert msg.qos == 1
        assert lamp.holding[0] == 25
        assert gateway.stats.commands["done"] == 1
        assert gateway.stats.recent_results[-1]["id"] == "dim-1"

    asyncio.run(main())


def test_garbage_command_is_rejected_and_polling_goes_on(mosquitto, pty_pair, sim, subscriber, tmp_path) -> None:
    """Garbage on the command topic gets 'rejected'/'malformed' with id null; data keeps flowing."""
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url, extra=trusted(tmp_path) + SENML)
    gateway = Gateway(config)
    results = subscriber(mosquitto.host, mosquitto.port, gateway.topics.result)
    data = subscriber(mosquitto.host, mosquitto.port, gateway.topics.data("lamp-1"))

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            await data.wait(lambda m: True)
            for garbage, reason in ((b"\xff\x00garbage", "malformed"), (b"", "malformed"),
                                    (cbor2.dumps([1, 2, 3]), "not_signed")):
                results.publish(gateway.topics.cmd, garbage)
                result = cbor2.loads((await results.wait(lambda m: True)).payload)
                assert (result["id"], result["status"], result["reason"]) == (None, "rejected", reason)
            # Data keeps flowing: more polls acknowledged by the broker after the garbage.
            acked = gateway.stats.packs_acked
            deadline = time.monotonic() + 30
            while gateway.stats.packs_acked <= acked + 1:
                assert time.monotonic() < deadline, "no data acknowledged after the garbage"
                await asyncio.sleep(0.05)
            assert gateway.stats.nodes["lamp-1"].online is True

    asyncio.run(main())


def test_unknown_node_is_rejected_with_its_id(mosquitto, pty_pair, sim, subscriber, tmp_path) -> None:
    """A command for a node the gateway does not have: 'rejected'/'unknown_target', id echoed."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)
    config = sim.config(gw_end, mosquitto.url, extra=trusted(tmp_path))
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.result)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]), running(gateway):
            command = {"id": "x-9", "target": "lamp-9", "action": "switch", "on": False}
            sub.publish(gateway.topics.cmd, signed(command))
            result = cbor2.loads((await sub.wait(lambda m: True)).payload)
        assert (result["id"], result["status"], result["reason"]) == ("x-9", "rejected", "unknown_target")
        assert lamp.writes == []

    asyncio.run(main())


def test_offline_node_and_group_broadcast(mosquitto, pty_pair, sim, subscriber, tmp_path) -> None:
    """A silent node goes offline (rejected commands); a bus-wide group is broadcast and confirmed."""
    gw_end, node_end = pty_pair
    lamps = [sim.lamp(1), sim.lamp(2)]
    config = sim.config(
        gw_end, mosquitto.url, units={"lamp-1": 1, "lamp-2": 2, "lamp-3": 3},
        groups={"street": ["lamp-1", "lamp-2"], "everything": ["lamp-1", "lamp-2", "lamp-3"]},
        extra=trusted(tmp_path),
    )
    gateway = Gateway(config, offline_interval=0.5)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.result)

    async def main() -> None:
        async with sim.serve(node_end, lamps), running(gateway):
            async with asyncio.timeout(20):
                while gateway.stats.nodes["lamp-3"].online is not False:  # noqa: ASYNC110 - polling stats is the point
                    await asyncio.sleep(0.02)
            send = lambda command: sub.publish(gateway.topics.cmd, signed(command))  # noqa: E731
            send({"id": "o-1", "target": "lamp-3", "action": "dim", "level": 5})
            offline = cbor2.loads((await sub.wait(lambda m: True)).payload)
            assert (offline["status"], offline["reason"]) == ("rejected", "offline_target")
            # The group covers only two of the three configured nodes: written one by one.
            send({"id": "g-1", "target": "group:street", "action": "dim", "level": 15})
            street = cbor2.loads((await sub.wait(lambda m: True)).payload)
            assert street["status"] == "done", street
            # "all" covers the bus: broadcast; lamp-3 is offline, so it is reported, not confirmed.
            send({"id": "a-1", "target": "all", "action": "switch", "on": False})
            everything = cbor2.loads((await sub.wait(lambda m: True)).payload)
            assert everything["status"] == "failed"
            assert everything["confirmed"] == ["lamp-1", "lamp-2"]
            assert everything["unconfirmed"] == ["lamp-3"]
            assert gateway.stats.buses["bus0"].broadcasts == 1
        assert [lamp.holding[:2] for lamp in lamps] == [[15, 0], [15, 0]]

    asyncio.run(main())


def test_mqtt_311_for_brokers_that_speak_nothing_newer(mosquitto, pty_pair, sim, subscriber, tmp_path) -> None:
    """With protocol "3.1.1" data and command results work the same."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)
    config = sim.config(gw_end, mosquitto.url, protocol="3.1.1", extra=trusted(tmp_path) + SENML)
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.root + "/#", protocol="3.1.1")

    async def main() -> None:
        async with sim.serve(node_end, [lamp]), running(gateway):
            await sub.wait(lambda m: m.topic == gateway.topics.data("lamp-1"))
            sub.publish(gateway.topics.cmd, signed({"id": "v3", "target": "lamp-1", "action": "dim", "level": 9}))
            msg = await sub.wait(lambda m: m.topic == gateway.topics.result)
        assert cbor2.loads(msg.payload)["status"] == "done"
        assert lamp.holding[0] == 9

    asyncio.run(main())


def test_embedded_amqtt_broker_with_311(pty_pair, sim, subscriber, tmp_path) -> None:
    """The demo's fallback broker (amqtt, MQTT 3.1.1 only) carries data, commands and results."""
    gw_end, node_end = pty_pair
    lamp = sim.lamp(1)
    with LocalBroker("amqtt") as broker:
        config = sim.config(gw_end, broker.url, protocol=broker.protocol, extra=trusted(tmp_path) + SENML)
        gateway = Gateway(config)
        sub = subscriber(broker.host, broker.port, gateway.topics.root + "/#", protocol="3.1.1")

        async def main() -> None:
            async with sim.serve(node_end, [lamp]), running(gateway):
                await sub.wait(lambda m: m.topic == gateway.topics.data("lamp-1"), within=30)
                command = {"id": "am-1", "target": "lamp-1", "action": "dim", "level": 3}
                sub.publish(gateway.topics.cmd, signed(command))
                msg = await sub.wait(lambda m: m.topic == gateway.topics.result, within=30)
            assert cbor2.loads(msg.payload)["status"] == "done"
            assert lamp.holding[0] == 3

        asyncio.run(main())
