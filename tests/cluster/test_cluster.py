"""Gateways on a real broker cluster: three RabbitMQ nodes (tools/cluster), killed with SIGKILL under load.

Real parts: the RabbitMQ nodes (separate Erlang VMs on loopback ports), real gateways (the daemon, in
this process) polling Modbus TCP lamp simulators into SQLite outboxes, pika as the independent AMQP
consumer that counts every ``(node, seq)``, paho-mqtt as the operator's and the result reader's client,
and ``streetedge listen --share`` processes as the competing consumers. One cluster per module: its
start-up (~10-30 s) is most of this file's time. The long versions are marked ``slow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as paho
import pika
import pika.exceptions
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion
from waiting import until

from gateway.delivery import compact
from gateway.service.config import Config, parse_config
from gateway.service.daemon import Gateway
from protocols import senml
from tools.cluster.rabbit import RabbitCluster
from tools.keys import commands_toml, key_entry, public_text
from tools.operator import Signer
from tools.sim.tcp_lamps import SimNode, TcpNodeServer

LAMPS = 2


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    # In pytest's temporary directory (kept for the last runs): the nodes' logs explain a failure.
    with RabbitCluster(3, tmp_path_factory.mktemp("cluster")) as c:
        yield c


def gateway_config(index: int, urls: list[str], lamp_port: int, outbox: Path, extra: str = "") -> Config:
    """Gateway ``gw-<index>`` with LAMPS lamps on one Modbus TCP server; its broker list starts at node ``index``."""
    rotated = urls[index % len(urls):] + urls[: index % len(urls)]
    nodes = "".join(
        f'[[node]]\nid = "g{index}-lamp-{u}"\nbus = "lamps"\nunit = {u}\ninterval = 0.2\n' for u in range(1, LAMPS + 1)
    )
    return parse_config(f"""
site = "city"
gateway = "gw-{index}"
[broker]
url = {rotated!r}
protocol = "3.1.1"
session = "persistent"
keepalive = 10
[http]
enabled = false
[delivery]
outbox = "{outbox}"
profile = "compact"
batch_interval = 0.5
synchronous = "NORMAL"
[[bus]]
name = "lamps"
type = "tcp"
host = "127.0.0.1"
port = {lamp_port}
timeout = 1.0
retries = 2
{nodes}{extra}""".replace("'", '"'), source=f"gw-{index}.toml")


@dataclass
class Fleet:
    """Running gateways, each with its lamp simulator."""

    gateways: list[Gateway] = field(default_factory=list)
    servers: list[TcpNodeServer] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def on_node(self, port: int) -> list[Gateway]:
        return [g for g in self.gateways if g.uplink is not None and g.uplink.url is not None
                and g.uplink.url.port == port and g.stats.broker_connected]

    def all_connected(self) -> bool:
        return all(g.stats.broker_connected for g in self.gateways)


@contextlib.asynccontextmanager
async def fleet(cluster: RabbitCluster, count: int, tmp: Path, extra: str = "") -> AsyncIterator[Fleet]:
    f = Fleet()
    try:
        for i in range(count):
            server = TcpNodeServer([SimNode(u) for u in range(1, LAMPS + 1)])
            await server.start()
            f.servers.append(server)
            gw = Gateway(gateway_config(i, cluster.mqtt_urls, server.port, tmp / f"gw-{i}.db", extra))
            f.gateways.append(gw)
            f.tasks.append(asyncio.create_task(gw.run()))
        await until(f.all_connected, what="every gateway connected")
        yield f
    finally:
        for gw in f.gateways:
            gw.stop()
        async with asyncio.timeout(60):
            await asyncio.gather(*f.tasks, return_exceptions=True)
        for server in f.servers:
            await server.stop()


class Counter:
    """The independent consumer: its own quorum queue bound to everything, on any node; counts (node, seq).

    Decodes compact messages with the births it saw (its queue exists before the gateways start, so it
    gets every birth as published). Reconnects to the next node when its node dies.
    """

    def __init__(self, urls: list[str], name: str) -> None:
        self.params = [pika.URLParameters(u) for u in urls]
        self.name = name
        self.births: dict[bytes, dict[str, Any]] = {}
        self.seen: dict[str, list[int]] = {}  # node (ids unique across gateways) -> every seq, duplicates kept
        self.messages = 0
        self.replayed = 0
        """Polls that came in historical (replayed backlog) messages."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()

    def __enter__(self) -> Counter:
        self._thread.start()
        assert self._ready.wait(60), "counting consumer did not bind its queue"
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def counting(self) -> bool:
        """The consumer still runs (a message it cannot decode ends its thread, with a traceback)."""
        return self._thread.is_alive()

    def unique(self) -> int:
        return sum(len(set(v)) for v in self.seen.values())

    def duplicates(self) -> int:
        return sum(len(v) - len(set(v)) for v in self.seen.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = pika.BlockingConnection(self.params)
                ch = conn.channel()
                ch.basic_qos(prefetch_count=500)
                ch.queue_declare(self.name, durable=True, arguments={"x-queue-type": "quorum"})
                ch.queue_bind(self.name, "amq.topic", "streetedge.v1.#")
                self._ready.set()
                for method, _props, body in ch.consume(self.name, inactivity_timeout=0.2):
                    if self._stop.is_set():
                        break
                    if method is None:
                        continue
                    self._take(method.routing_key.replace(".", "/"), body)
                    ch.basic_ack(method.delivery_tag)
                with contextlib.suppress(Exception):
                    conn.close()
            except (pika.exceptions.AMQPError, OSError):
                time.sleep(0.3)

    def _take(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        if parts[-1] == "birth" and len(parts) == 5:
            body = cbor2.loads(payload)
            self.births[body["birth"]] = body
        elif parts[-1] == "compact":
            self.messages += 1
            header = cbor2.loads(payload)
            packs = compact.to_senml(payload, self.births[header[3]])
            if header[2] & compact.HISTORICAL:
                self.replayed += len(packs)
            for pack in packs:
                records = senml.resolve(pack)
                node = records[0]["n"].split(":")[-2]
                seq = next(int(r["v"]) for r in records if r["n"].endswith(":seq"))
                self.seen.setdefault(node, []).append(seq)


def lost(counter: Counter, f: Fleet) -> dict[str, str]:
    """Lamps whose polls did not all arrive, counted by ``(node, seq)``: what is missing, or unexpected.

    A simulated lamp hands out seq 1, 2, 3 ... one per poll (tools/sim/tcp_lamps), so the seqs a lamp served are
    exactly 1..its seq now. The gateway recorded ``polls`` of them (fewer only if it gave up on an answer it then
    got: a timed-out read); the consumer must have exactly that many distinct seqs, every one served.
    """
    out = {}
    for i, (gw, server) in enumerate(zip(f.gateways, f.servers, strict=True)):
        for unit in range(1, LAMPS + 1):
            node = f"g{i}-lamp-{unit}"
            polls = gw.stats.nodes[node].polls
            served = set(range(1, int(server.nodes[unit].value("seq")) + 1))
            seen = set(counter.seen.get(node, []))
            if polls == 0 or len(seen) != polls or not seen <= served:
                missing, unknown = sorted(served - seen), sorted(seen - served)
                out[node] = f"{polls} polls, {len(seen)} seen; not seen {missing[:20]}; never served {unknown[:20]}"
    return out


async def assert_nothing_lost(counter: Counter, f: Fleet) -> None:
    """Every poll a gateway recorded reaches the consumer (one distinct seq each), once it has caught up."""
    with contextlib.suppress(AssertionError):
        await until(lambda: not lost(counter, f), within=90, what="every recorded poll counted")
    assert counter.counting(), "the counting consumer's thread died (see its traceback above)"
    assert not lost(counter, f), f"recorded polls missing: {lost(counter, f)}"


async def quiet_and_drained(f: Fleet) -> float:
    """Stop the lamps (no new polls), then wait until every gateway's outbox is empty: all its backlog replayed
    and acknowledged. Returns the seconds that took.

    Stopping a gateway earlier leaves its unreplayed backlog in its outbox (kept for its next start, never lost):
    a gateway that reconnected a second before the stop has not replayed it yet (it starts after a second of
    drain budget), and a consumer would miss polls it did get in the end.
    """
    started = time.monotonic()
    for server in f.servers:
        await server.stop()
    await until(lambda: all(g.delivery is not None and g.delivery.waiting == 0 and g.stats.outbox_depth == 0
                            for g in f.gateways), within=120, what="every outbox empty")
    return time.monotonic() - started


async def failover(cluster: RabbitCluster, tmp: Path, gateways: int, dwell: float) -> dict[str, float]:
    """Kill a node holding gateways, bring it back, kill another; count everything.

    The second node stays down (the module's tests that need every node run before this one).
    """
    for index, node in enumerate(cluster.nodes):
        if not node.running:
            await asyncio.to_thread(cluster.restart, index)
    reconnects: list[float] = []
    with Counter(cluster.amqp_urls[2:] + cluster.amqp_urls[:2], f"count-{os.getpid()}-{gateways}") as counter:
        async with fleet(cluster, gateways, tmp) as f:
            await until(lambda: counter.unique() > gateways * LAMPS * 3, what="first readings")
            first: int | None = None
            for _ in range(2):
                # The node holding the most gateways (the first one killed is not killed again).
                victim = max((i for i in range(len(cluster.nodes)) if i != first),
                             key=lambda i: len(f.on_node(cluster.nodes[i].mqtt_port)))
                port = cluster.nodes[victim].mqtt_port
                homed = f.on_node(port)
                assert homed, f"no gateway on node {victim}"
                before = counter.unique()
                killed_at = time.monotonic()
                cluster.kill(victim)
                pending = {id(g): g for g in homed}
                while pending:
                    await asyncio.sleep(0.02)
                    for key, g in list(pending.items()):
                        assert g.uplink is not None
                        if g.stats.broker_connected and g.uplink.url is not None and g.uplink.url.port != port:
                            reconnects.append(time.monotonic() - killed_at)
                            del pending[key]
                    assert time.monotonic() - killed_at < 120, "gateways did not move to a surviving node"
                await until(lambda b=before: counter.unique() > b + gateways * LAMPS * 3, what="data after failover")
                await asyncio.sleep(dwell)
                if first is None:  # bring the first one back; the second stays down
                    await asyncio.to_thread(cluster.restart, victim)
                    first = victim
            await until(f.all_connected, what="all gateways connected at the end")
            drained = await quiet_and_drained(f)
            polls = sum(n.polls for g in f.gateways for n in g.stats.nodes.values())
            # Every record acknowledged by the broker: the consumer must catch up with all of them.
            await assert_nothing_lost(counter, f)
        for i in range(gateways):
            assert not_stored(tmp / f"gw-{i}.db")
    ordered = sorted(reconnects)
    return {
        "readings": counter.unique(), "duplicates": counter.duplicates(), "polls": polls,
        "replayed": counter.replayed, "drained_s": drained,
        "reconnect_p50": statistics.median(ordered), "reconnect_p99": ordered[min(len(ordered) - 1,
                                                                                    int(len(ordered) * 0.99))],
    }


def not_stored(path: Path) -> bool:
    """The outbox file holds no record any more (everything acknowledged)."""
    import sqlite3

    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT count(*) FROM records").fetchone()[0] == 0
    finally:
        db.close()


def listen_process(cluster: RabbitCluster, out: Path) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).parent / "streetedge"
    args = [str(exe), "listen", "--share", "platform", "--resolved"]
    for url in cluster.amqp_urls:
        args += ["--amqp", url]
    return subprocess.Popen(args, stdout=out.open("ab"), stderr=out.with_suffix(".err").open("ab"))


def shared_seqs(paths: list[Path]) -> dict[str, list[int]]:
    """Lamp -> seqs printed by all instances together (resolved SenML-JSON lines)."""
    import json

    seen: dict[str, list[int]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            records = json.loads(line)
            node = records[0]["n"].split(":")[-2]  # urn:dev:streetedge:<site>:<node>:<field>
            seq = next(int(r["v"]) for r in records if r["n"].endswith(":seq"))
            seen.setdefault(node, []).append(seq)
    return seen


async def wait_ready(err: Path, connects: int = 1, within: float = 60.0) -> None:
    await until(lambda: err.exists() and err.read_text().count("consuming") >= connects, within,
                what=f"{err.name} consuming")


def test_three_consumers_share_the_data_and_one_restarts(cluster: RabbitCluster, tmp_path: Path) -> None:
    """Three `streetedge listen --share` instances, one SIGKILLed and restarted: together they see every reading."""
    outs = [tmp_path / f"consumer-{i}.jsonl" for i in range(3)]

    async def main() -> None:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            with Counter(cluster.amqp_urls, f"count-share-{os.getpid()}") as counter:
                # The group's queue exists before the gateways publish (a platform's queue outlives its instances).
                procs += [listen_process(cluster, out) for out in outs]
                for out in outs:
                    await wait_ready(out.with_suffix(".err"))
                async with fleet(cluster, 3, tmp_path) as f:
                    await until(lambda: all(o.stat().st_size > 0 for o in outs), what="every instance printing")
                    procs[1].send_signal(signal.SIGKILL)
                    procs[1].wait(10)
                    down_at = counter.unique()
                    await until(lambda: counter.unique() > down_at + 30, what="data while one is down")
                    procs[1] = listen_process(cluster, outs[1])  # knows no birth: it must announce itself
                    await wait_ready(outs[1].with_suffix(".err"), connects=2)
                    size = outs[1].stat().st_size
                    await until(lambda: outs[1].stat().st_size > size, what="the restarted instance printing")
                    await quiet_and_drained(f)
                # Gateways stopped, every record acknowledged: the consumers empty the queue.
                await assert_nothing_lost(counter, f)
                truth = {k: set(v) for k, v in counter.seen.items()}
                await until(lambda: all(set(shared_seqs(outs).get(k, [])) >= v for k, v in truth.items()),
                            what="the consumers together caught up")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
        seen = shared_seqs(outs)
        for key, seqs in truth.items():
            assert set(seen.get(key, [])) >= seqs, f"{key}: the group missed {sorted(seqs - set(seen[key]))[:10]}"
        per_instance = [len(o.read_text().splitlines()) for o in outs]
        assert all(n > 0 for n in per_instance), per_instance  # the load was split, not taken by one

    asyncio.run(main())


def test_a_signed_command_published_on_one_node_reaches_a_gateway_on_another(
    cluster: RabbitCluster, tmp_path: Path
) -> None:
    """Operator on node 0, gateway on node 2, result read on node 1: the lamp dims and `done` comes back."""
    key = Ed25519PrivateKey.generate()
    extra = commands_toml(tmp_path) + key_entry("ops", public_text(key), ["*"], ["*"])
    results: queue.Queue[dict[str, Any]] = queue.Queue()

    def client(index: int, subscribe: str | None = None) -> paho.Client:
        c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        subscribed = threading.Event()
        if subscribe:
            c.on_connect = lambda cl, *_: cl.subscribe(subscribe, qos=1)
            c.on_subscribe = lambda *_: subscribed.set()
            c.on_message = lambda _c, _u, m: results.put(cbor2.loads(m.payload))
        else:
            subscribed.set()
        c.connect("127.0.0.1", cluster.nodes[index].mqtt_port)
        c.loop_start()
        assert subscribed.wait(30)
        return c

    async def main() -> None:
        server = TcpNodeServer([SimNode(1)])
        await server.start()
        urls = [cluster.nodes[2].mqtt_url]
        config = gateway_config(0, urls, server.port, tmp_path / "cmd.db", extra)
        gw = Gateway(config)
        task = asyncio.create_task(gw.run())
        reader = client(1, gw.topics.result)
        operator = client(0)
        try:
            await until(lambda: gw.stats.broker_connected, what="gateway connected")
            assert gw.uplink is not None and gw.uplink.url is not None
            assert gw.uplink.url.port == cluster.nodes[2].mqtt_port
            envelope = Signer(key, "ops").envelope("g0-lamp-1", "dim", {"level": 40}, command_id="across-1")
            operator.publish(gw.topics.cmd, envelope, qos=1).wait_for_publish(30)
            result = await asyncio.to_thread(results.get, True, 60)
            assert result["id"] == "across-1"
            assert result["status"] == "done", result
            assert server.nodes[1].value("dim_level") == 40
        finally:
            for c in (reader, operator):
                c.loop_stop()
                c.disconnect()
            gw.stop()
            async with asyncio.timeout(60):
                await task
            await server.stop()

    asyncio.run(main())


def test_gateways_fail_over_between_nodes_and_nothing_is_lost(cluster: RabbitCluster, tmp_path: Path) -> None:
    """SIGKILL a node, bring it back, kill another: every gateway moves on, 0 readings lost."""
    figures = asyncio.run(failover(cluster, tmp_path, gateways=3, dwell=0.5))
    print(f"failover: {figures}")


@pytest.mark.slow
def test_failover_with_more_gateways_and_longer_outages(cluster: RabbitCluster, tmp_path: Path) -> None:
    figures = asyncio.run(failover(cluster, tmp_path, gateways=12, dwell=5.0))
    print(f"failover (slow): {figures}")
