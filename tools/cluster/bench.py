"""``streetedge bench cluster --rabbitmq``: many simulated gateways against the three-node RabbitMQ cluster.

Starts a cluster of its own (:mod:`tools.cluster.rabbit`) and plays ``--gateways`` gateways against
it, spread over the nodes (gateway ``i`` on node ``i % 3``), each as the real gateway behaves on this
broker (``[broker] protocol = "3.1.1"``, ``session = "persistent"``): one MQTT 3.1.1 connection with
its Will and a persistent session, the retained state, births and counters at connect, a QoS 1
subscription to its command topic (one quorum queue per gateway, replicated on the three nodes), then
one compact message per interval (payloads of :mod:`tools.load_gateways`). One AMQP consumer reads
everything from a quorum queue bound to ``streetedge.v1.#``, as a city's data platform would.

Measured over a steady window: messages in per second, the brokers' CPU (the three Erlang VMs, from
``/proc``) per 1000 messages in (each also delivered once, to the consumer), their resident memory
per connected gateway. Then node 0 is killed with SIGKILL: the time until every gateway it held is
connected to a surviving node and has published its births again (p50, p99, all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import statistics
import threading
import time

import aiomqtt
import pika
import pika.exceptions

from gateway.delivery import birth
from tools.bench import cpu_seconds, record
from tools.cluster.rabbit import RabbitCluster
from tools.load_gateways import DOCS, REGISTERS, Traffic, rss_kb, traffic

CONNECTING_AT_ONCE = 20
"""Gateways connecting at the same time (a city's cabinets come up over a while, not in one instant)."""


class AmqpCounter:
    """The data platform: one quorum queue bound to every gateway topic, counted in a thread."""

    def __init__(self, urls: list[str]) -> None:
        self.params = [pika.URLParameters(u) for u in urls]
        self.messages = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("the AMQP consumer did not bind its queue in 60 s")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn = pika.BlockingConnection(self.params)
                ch = conn.channel()
                ch.basic_qos(prefetch_count=1000)
                ch.queue_declare("bench.platform", durable=True, arguments={"x-queue-type": "quorum"})
                ch.queue_bind("bench.platform", "amq.topic", "streetedge.v1.#")
                self._ready.set()
                for method, _props, _body in ch.consume("bench.platform", inactivity_timeout=0.2):
                    if self._stop.is_set():
                        break
                    if method is not None:
                        self.messages += 1
                        ch.basic_ack(method.delivery_tag)
                with contextlib.suppress(Exception):
                    conn.close()
            except (pika.exceptions.AMQPError, OSError):
                time.sleep(0.3)

    def close(self) -> None:
        """Stop consuming."""
        self._stop.set()
        self._thread.join(30)


class ClusterFleet:
    """Simulated gateways on the cluster: connect to their node, move to the next one when it dies."""

    def __init__(self, cluster: RabbitCluster, traffics: list[Traffic], interval: float) -> None:
        self.ports = [n.mqtt_port for n in cluster.nodes]
        self.traffics = traffics
        self.interval = interval
        self.connected = 0
        self.sent = 0
        self.node_of: dict[int, int] = {}
        self.rehomed: dict[int, float] = {}
        """Gateway -> monotonic time it was connected again (births out) after losing its node."""
        self.stop = asyncio.Event()
        self._gate = asyncio.Semaphore(CONNECTING_AT_ONCE)

    async def run(self) -> None:
        """Every gateway, until :attr:`stop` is set."""
        async with asyncio.TaskGroup() as group:
            for i, t in enumerate(self.traffics):
                group.create_task(self._one(i, t))

    async def _one(self, index: int, t: Traffic) -> None:
        node = index % len(self.ports)
        first = True
        while not self.stop.is_set():
            will = aiomqtt.Will(t.root + "/state", birth.state(online=False, session=1), qos=1, retain=True)
            client = aiomqtt.Client("127.0.0.1", self.ports[node], identifier=f"streetedge-{t.site}-{t.gateway}",
                                    protocol=aiomqtt.ProtocolVersion.V311, clean_session=False, will=will,
                                    keepalive=30, timeout=30)
            try:
                # The first connections are paced (cabinets come up over a while); a re-homing is not: every
                # gateway of the lost node tries the next one on its own, as the real ones do.
                async with self._gate if first else contextlib.nullcontext():
                    await client.__aenter__()
                    for topic, payload in t.opening:
                        await client.publish(topic, payload, qos=1, retain=True)
                    await client.subscribe(t.root + "/cmd", qos=1)
                self.node_of[index] = node
                if first:
                    self.connected += 1
                    first = False
                else:
                    self.rehomed[index] = time.monotonic()
                await self._publish(client, t)
                return
            except aiomqtt.MqttError:
                node = (node + 1) % len(self.ports)  # the next node of the list, as the gateway does
            finally:
                with contextlib.suppress(Exception):
                    await client.__aexit__(None, None, None)

    async def _publish(self, client: aiomqtt.Client, t: Traffic) -> None:
        await asyncio.sleep(random.uniform(0, self.interval))  # cabinets are not in step
        topic, payload = t.periodic
        while not self.stop.is_set():
            await client.publish(topic, payload, qos=1)
            self.sent += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.interval)


async def measure(gateways: int, lamps: int, seconds: float, interval: float) -> dict[str, float]:
    """Start the cluster, run the fleet, measure the steady window, kill node 0 and time the re-homing."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    rng = random.Random(1)
    traffics = [traffic(i, lamps, rng) for i in range(gateways)]
    with RabbitCluster(3) as cluster:
        pids = [pid for pid in (n.beam_pid() for n in cluster.nodes) if pid is not None]
        rss_empty = sum(rss_kb(pid) for pid in pids)
        idle0, idle_t0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
        await asyncio.sleep(min(seconds, 10.0))  # what three idle nodes cost, taken off the per-message figure
        idle_share = (sum(cpu_seconds(p) for p in pids) - idle0) / (time.monotonic() - idle_t0)
        consumer = AmqpCounter(cluster.amqp_urls[1:] + cluster.amqp_urls[:1])
        fleet = ClusterFleet(cluster, traffics, interval)
        runner = asyncio.create_task(fleet.run())
        started = time.monotonic()
        while fleet.connected < gateways:
            if runner.done():
                runner.result()
            if time.monotonic() - started > 1200:
                raise RuntimeError(f"only {fleet.connected} of {gateways} gateways connected in 1200 s")
            await asyncio.sleep(0.2)
        connect_s = time.monotonic() - started
        await asyncio.sleep(interval * 2)
        c0, m0, s0, t0 = sum(cpu_seconds(p) for p in pids), consumer.messages, fleet.sent, time.monotonic()
        await asyncio.sleep(seconds)
        c1, m1, s1, t1 = sum(cpu_seconds(p) for p in pids), consumer.messages, fleet.sent, time.monotonic()
        rss = sum(rss_kb(pid) for pid in pids)
        on_victim = [i for i, node in fleet.node_of.items() if node == 0]
        await asyncio.to_thread(cluster.kill, 0)
        killed = time.monotonic()
        while not all(i in fleet.rehomed for i in on_victim):
            if time.monotonic() - killed > 600:
                raise RuntimeError(f"{len(fleet.rehomed)} of {len(on_victim)} gateways re-homed in 600 s")
            await asyncio.sleep(0.05)
        all_rehomed = time.monotonic() - killed
        fleet.stop.set()
        await runner
        consumer.close()
    window = t1 - t0
    times = sorted(fleet.rehomed[i] - killed for i in on_victim)
    return {
        "gateways": gateways, "lamps": lamps, "interval": interval, "window": window, "connect_s": connect_s,
        "in_per_s": (s1 - s0) / window, "out_per_s": (m1 - m0) / window,
        "cpu_per_1000": 1000 * max(0.0, (c1 - c0) - idle_share * window) / max(s1 - s0, 1),
        "cpu_share": (c1 - c0) / window, "idle_share": idle_share,
        "rss_mb": rss / 1024, "rss_per_gateway_kb": (rss - rss_empty) / gateways,
        "victims": len(on_victim), "rehome_p50": statistics.median(times),
        "rehome_p99": times[min(len(times) - 1, int(len(times) * 0.99))], "rehome_all": all_rehomed,
    }


def table(f: dict[str, float]) -> str:
    """The figures as Markdown."""
    return "\n".join([
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores (shared), RabbitMQ 3.10 (Debian), three nodes on "
        f"loopback, no TLS; {f['gateways']:,.0f} gateways of {f['lamps']:.0f} lamps (the lamp map's "
        f"{len(REGISTERS)} registers), MQTT 3.1.1 with persistent sessions, spread over the three nodes, each "
        f"publishing one compact message every {f['interval']:g} s; one AMQP consumer of everything (a quorum "
        f"queue); {f['window']:.0f} s window; all connected in {f['connect_s']:.0f} s.",
        "",
        "| figure | measured |",
        "|---|---:|",
        f"| gateways connected (per node) | {f['gateways']:,.0f} ({f['gateways'] / 3:,.0f}) |",
        f"| messages in / out per second | {f['in_per_s']:,.0f} / {f['out_per_s']:,.0f} |",
        f"| brokers' CPU, three nodes together: idle / with the fleet | {f['idle_share']:.2f} / "
        f"{f['cpu_share']:.2f} cores |",
        f"| brokers' CPU per 1000 messages in (each delivered once), idle cost taken off "
        f"| {f['cpu_per_1000']:.3f} CPU-s |",
        f"| brokers' resident memory, three nodes together | {f['rss_mb']:,.0f} MB |",
        f"| resident memory per connected gateway (three nodes together) | {f['rss_per_gateway_kb']:,.1f} KB |",
        f"| node 0 killed (SIGKILL): its gateways | {f['victims']:,.0f} |",
        f"| time to re-home one (connected to a survivor, births out again), p50 / p99 "
        f"| {f['rehome_p50']:.2f} s / {f['rehome_p99']:.2f} s |",
        f"| time to re-home all of them | {f['rehome_all']:.1f} s |",
    ])


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print, optionally record in docs/broker-cluster.md."""
    parser = argparse.ArgumentParser(prog="streetedge bench cluster --rabbitmq", description=__doc__)
    parser.add_argument("--gateways", type=int, default=1000)
    parser.add_argument("--lamps", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args(argv)
    figures = asyncio.run(measure(args.gateways, args.lamps, args.seconds, args.interval))
    text = table(figures)
    print(text)
    if args.write_docs:
        command = (f"streetedge bench cluster --rabbitmq --gateways {args.gateways} --lamps {args.lamps} "
                   f"--seconds {args.seconds:g} --interval {args.interval:g} --write-docs")
        record("rabbitmq cluster", "Measured: gateways on the RabbitMQ cluster", command, text, DOCS)
    return 0
