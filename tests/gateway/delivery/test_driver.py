"""The durable data path end to end: outbox, births, compact and SenML profiles, replay, retention, restarts.

Real parts: Mosquitto, a pymodbus lamp on a pty pair, SQLite files, and paho as the independent subscriber.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import msgspec
from waiting import until

from gateway.delivery import compact
from gateway.service.daemon import Gateway
from protocols import senml
from tools.broker import LocalBroker, free_port


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[Gateway]:
    task = asyncio.create_task(gateway.run())
    try:
        await until(lambda: gateway.delivery is not None or task.done())
        yield gateway
    finally:
        gateway.stop()
        async with asyncio.timeout(30):
            await task


def delivery(outbox: Path, **settings: object) -> str:
    """A [delivery] table with ``outbox`` and more settings."""
    lines = ["[delivery]", f'outbox = "{outbox}"']
    lines += [f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def stored_seqs(path: Path) -> set[tuple[str, int]]:
    """(node, seq) of what the outbox file holds now (the gateway that owned it has stopped)."""
    db = sqlite3.connect(path)
    try:
        return {(n, s) for n, s in db.execute("SELECT node, seq FROM records")}
    finally:
        db.close()


def seqs_in(msg: Any, births: dict[bytes, dict[str, Any]]) -> list[tuple[str, int]]:
    """(node, seq) of every poll in a data message of either profile."""
    payload = bytes(msg.payload)
    if msg.topic.endswith("/compact"):
        birth_id = cbor2.loads(payload)[3]
        packs = compact.to_senml(payload, births[birth_id])
    else:
        packs = [senml.from_labels(cbor2.loads(payload))]
    out = []
    for pack in packs:
        records = senml.resolve(pack)
        node = records[0]["n"].split(":")[-2]
        out.append((node, next(r["v"] for r in records if r["n"].endswith(":seq"))))
    return out


def user_properties(msg: Any) -> dict[str, str]:
    props = getattr(msg, "properties", None)
    return dict(getattr(props, "UserProperty", []) or [])


def test_compact_profile_sends_births_then_batches_that_decode_to_senml(
    mosquitto, pty_pair, sim, subscriber, tmp_path
) -> None:
    """Retained gateway and node births (seq 0, 1, ...), then compact batches a consumer turns into SenML."""
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url, units={"lamp-1": 1, "lamp-2": 2}, interval=0.1,
                        extra=delivery(tmp_path / "outbox.db", profile="compact", batch_interval=0.5))
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.root + "/#")

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1, power=41.5), sim.lamp(2)]), running(gateway):
            gb = await sub.wait(lambda m: m.topic == gateway.topics.birth)
            first = await sub.wait(lambda m: m.topic == gateway.topics.compact)
            second = await sub.wait(lambda m: m.topic == gateway.topics.compact)
            nb = await sub.wait(lambda m: m.topic == gateway.topics.node_birth("lamp-1"))
            status = await sub.wait(lambda m: m.topic == gateway.topics.delivery)
            late = subscriber(mosquitto.host, mosquitto.port, gateway.topics.birth)
            assert (await late.wait(lambda m: True)).retain  # a late consumer still learns the schema
        body = cbor2.loads(gb.payload)
        assert body["seq"] == 0 and body["profile"] == "compact"
        assert [n for n, _ in body["nodes"]] == ["lamp-1", "lamp-2"]
        assert cbor2.loads(nb.payload)["seq"] in (1, 2)
        assert cbor2.loads(nb.payload)["firmware"] in (None, 0x0100)
        assert set(cbor2.loads(status.payload)) >= {"stored", "dropped", "depth", "session", "seq"}
        one, two = compact.decode(first.payload, body), compact.decode(second.payload, body)
        assert two.seq > one.seq > 2  # after the births, in publishing order
        assert not one.historical
        packs = compact.to_senml(first.payload, body)
        records = {r["n"]: r for pack in packs for r in senml.resolve(pack)}
        assert records["urn:dev:streetedge:test-site:lamp-1:power"]["v"] == 41.5
        assert records["urn:dev:streetedge:test-site:lamp-1:power"]["u"] == "W"
        assert {row[0] for row in one.rows + two.rows} <= {"lamp-1", "lamp-2"}

    asyncio.run(main())
    assert gateway.stats.outbox_depth == 0 or gateway.stats.packs_acked > 0


def test_backlog_survives_a_restart_and_drains_behind_live_data(pty_pair, sim, subscriber, tmp_path) -> None:
    """No broker: polls pile up on disk. Restarted, and with a broker, the gateway replays them (historical),
    live data goes out meanwhile, and every stored (node, seq) arrives."""
    gw_end, node_end = pty_pair
    port = free_port()
    outbox = tmp_path / "outbox.db"
    config = sim.config(gw_end, f"mqtt://127.0.0.1:{port}", interval=0.02,
                        extra=delivery(outbox, drain_rate=40.0, profile="senml"))
    lamp = sim.lamp(1)

    async def offline_run() -> None:
        gateway = Gateway(config)
        async with sim.serve(node_end, [lamp]), running(gateway):
            await until(lambda: gateway.stats.outbox_stored >= 150)

    asyncio.run(offline_run())
    backlog = stored_seqs(outbox)
    assert len(backlog) >= 150

    with LocalBroker("mosquitto", port=port) as broker:
        gateway = Gateway(config)
        sub = subscriber(broker.host, broker.port, gateway.topics.data_prefix + "#")
        order: list[tuple[bool, int]] = []  # (historical, seq) in arrival order

        async def online_run() -> None:
            async with sim.serve(node_end, [lamp]), running(gateway):
                seen: set[int] = set()
                while not {s for _, s in backlog} <= seen:
                    msg = await sub.wait(lambda m: True, within=60)
                    ((_, seq),) = seqs_in(msg, {})
                    seen.add(seq)
                    order.append((user_properties(msg).get("historical") == "1", seq))

        asyncio.run(online_run())
    historical = [s for h, s in order if h]
    live = [s for h, s in order if not h]
    assert set(historical) >= {s for _, s in backlog} - set(live)
    assert historical == sorted(historical), "the backlog goes out oldest first"
    last_historical = max(i for i, (h, _) in enumerate(order) if h)
    assert any(not h for h, _ in order[:last_historical]), "live data went out while the backlog drained"


def test_sessions_count_up_across_restarts_and_the_will_names_its_session(
    mosquitto, pty_pair, sim, subscriber, tmp_path
) -> None:
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url, extra=delivery(tmp_path / "outbox.db"))
    sessions = []
    for _ in range(2):
        gateway = Gateway(config)
        sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.state)

        async def main(gateway: Gateway = gateway, sub: Any = sub) -> None:
            async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
                msg = await sub.wait(lambda m: cbor2.loads(m.payload)["online"] is True)
                sessions.append(cbor2.loads(msg.payload)["session"])

        asyncio.run(main())
    assert sessions[1] > sessions[0] >= 1


def test_a_full_budget_drops_the_oldest_and_says_so_upstream(pty_pair, sim, subscriber, tmp_path) -> None:
    """A 16 KiB budget and no broker: old polls go; upstream learns how many, and gets all the rest."""
    gw_end, node_end = pty_pair
    port = free_port()
    outbox = tmp_path / "outbox.db"
    config = sim.config(gw_end, f"mqtt://127.0.0.1:{port}", interval=0.02,
                        extra=delivery(outbox, budget_mb=16 / 1024, drain_rate=500.0, profile="senml"))

    async def offline_run() -> None:
        gateway = Gateway(config)
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            await until(lambda: gateway.stats.outbox_dropped >= 50)

    asyncio.run(offline_run())
    kept = stored_seqs(outbox)
    with LocalBroker("mosquitto", port=port) as broker:
        gateway = Gateway(config)
        sub = subscriber(broker.host, broker.port, gateway.topics.root + "/#")

        async def online_run() -> dict[str, Any]:
            async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
                status = await sub.wait(lambda m: m.topic == gateway.topics.delivery)
                seen: set[tuple[str, int]] = set()
                while not kept <= seen:
                    msg = await sub.wait(lambda m: "/data/" in m.topic, within=60)
                    seen.update(seqs_in(msg, {}))
                counts: dict[str, Any] = cbor2.loads(status.payload)
                return counts

        counts = asyncio.run(online_run())
    assert counts["dropped"]["readings"] >= 50
    assert counts["stored"] >= counts["dropped"]["readings"] + len(kept)


def test_failover_to_the_next_broker_and_back(pty_pair, sim, subscriber, tmp_path) -> None:
    """Two brokers in the list: the first gone, the gateway publishes on the second; a restart of the first
    and a loss of the second move it back."""
    gw_end, node_end = pty_pair
    port_a, port_b = free_port(), free_port()
    config = sim.config(gw_end, extra=delivery(tmp_path / "outbox.db", profile="senml"))
    urls = [f"mqtt://127.0.0.1:{port_a}", f"mqtt://127.0.0.1:{port_b}"]
    gateway = Gateway(msgspec.structs.replace(config, broker=msgspec.structs.replace(config.broker, url=urls)))

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]):
            with LocalBroker("mosquitto", port=port_b) as b:
                sub_b = subscriber(b.host, b.port, gateway.topics.data_prefix + "#")
                async with running(gateway):
                    await sub_b.wait(lambda m: True, within=30)
                    assert gateway.uplink is not None and gateway.uplink.url is not None
                    assert gateway.uplink.url.port == port_b
                    with LocalBroker("mosquitto", port=port_a) as a:
                        sub_a = subscriber(a.host, a.port, gateway.topics.data_prefix + "#")
                        b.stop()
                        await sub_a.wait(lambda m: True, within=30)
                        assert gateway.uplink.url.port == port_a

    asyncio.run(main())


def test_a_rebirth_republishes_every_birth_with_seq_zero(mosquitto, pty_pair, sim, subscriber, tmp_path) -> None:
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url, extra=delivery(tmp_path / "outbox.db", profile="compact"))
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.birth + "/#")
    sub_gw = subscriber(mosquitto.host, mosquitto.port, gateway.topics.birth)

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            await sub_gw.wait(lambda m: True)
            await sub.wait(lambda m: True)
            assert gateway.delivery is not None
            await gateway.delivery.rebirth(["lamp-1"])
            again = await sub_gw.wait(lambda m: not m.retain, within=30)
            node = await sub.wait(lambda m: not m.retain, within=30)
            assert cbor2.loads(again.payload)["seq"] == 0
            assert cbor2.loads(node.payload)["node"] == "lamp-1"

    asyncio.run(main())


def test_a_new_firmware_brings_a_new_node_birth(mosquitto, pty_pair, sim, subscriber, tmp_path) -> None:
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url, extra=delivery(tmp_path / "outbox.db"))
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.node_birth("lamp-1"))
    lamp = sim.lamp(1)

    async def main() -> None:
        async with sim.serve(node_end, [lamp]), running(gateway):
            await sub.wait(lambda m: cbor2.loads(m.payload)["firmware"] == 0x0100, within=30)
            lamp.values["firmware"] = 0x0102
            await sub.wait(lambda m: cbor2.loads(m.payload)["firmware"] == 0x0102, within=30)

    asyncio.run(main())


def test_senml_messages_carry_seq_and_session_as_user_properties(
    mosquitto, pty_pair, sim, subscriber, tmp_path
) -> None:
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url, extra=delivery(tmp_path / "outbox.db", profile="senml"))
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.data("lamp-1"))

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            # Polls made before the broker connection was up go out as backlog (historical);
            # live ones must not carry the flag.
            a = await sub.wait(lambda m: "historical" not in user_properties(m))
            b = await sub.wait(lambda m: True)
        pa, pb = user_properties(a), user_properties(b)
        assert pa["session"] == pb["session"]
        assert (int(pb["seq"]) - int(pa["seq"])) % 256 >= 1

    asyncio.run(main())


def test_records_of_a_register_map_that_changed_since_still_go_out(
    mosquitto, pty_pair, sim, subscriber, tmp_path
) -> None:
    """A poll stored by an older gateway under another map: published as SenML from the schema the outbox kept."""
    from gateway.delivery.birth import Field, NodeSchema, encode_schema, schema_id
    from gateway.delivery.outbox import Kind, Outbox, OutboxRecord
    from gateway.delivery.senml_records import encode_poll

    fields = (Field("level", "%", 0, "u16"), Field("seq", None, 0, "u32"), Field("watts", "W", -1, "u16"))
    old = NodeSchema("lamp", fields, schema_id(["lamp", [list(f) for f in fields]]))
    outbox = tmp_path / "outbox.db"
    with Outbox(outbox) as box:
        box.remember_schemas({old.id: encode_schema(old)})
        box.put_many([OutboxRecord("lamp-1", 77, Kind.READING, 1_798_761_600.0,
                                   encode_poll(old.id, 1_798_761_600_000, [30, 77, 415]))])
    gw_end, node_end = pty_pair
    config = sim.config(gw_end, mosquitto.url, extra=delivery(outbox, profile="compact"))
    gateway = Gateway(config)
    sub = subscriber(mosquitto.host, mosquitto.port, gateway.topics.data("lamp-1"))

    async def main() -> None:
        async with sim.serve(node_end, [sim.lamp(1)]), running(gateway):
            msg = await sub.wait(lambda m: True, within=30)
            records = {r["n"].rsplit(":", 1)[1]: r for r in senml.resolve(senml.from_labels(cbor2.loads(msg.payload)))}
            assert records["watts"] == {"n": "urn:dev:streetedge:test-site:lamp-1:watts", "u": "W", "v": 41.5,
                                        "t": 1_798_761_600.0}
            assert user_properties(msg).get("historical") == "1"

    asyncio.run(main())
