"""``streetedge bench commands``: command latency, from publish to result, for one lamp and for a whole bus.

    streetedge bench commands --nodes 8 --rounds 50 --bus-rounds 10 --write-docs
    streetedge bench commands --nodes 247 --paced --baud 19200 --rounds 0 --bus-rounds 3

A Mosquitto broker, a virtual street of real firmware lamps (paced at the
line rate with ``--paced``), and the gateway daemon as its own process
(``streetedge run``, as systemd runs it). The operator side keeps one MQTT
connection, signs each command (Ed25519, COSE_Sign1), publishes it and times
the arrival of its result: signature check, audit fsyncs, Modbus write or
broadcast, and the read-back of every lamp are all inside the figure. A
one-lamp command's bus stage is split, from the bus's timestamped traffic,
into the write's transaction on the line and the rest (waiting for the line,
the gateway's handling): :mod:`tools.bench.commands_wire`.

The whole-bus figure is compared with the line-rate limit of the same work
(:func:`line_limit`): one broadcast write of one register, the turnaround the
gateway waits after a broadcast, then per lamp a one-register read (8-byte
request, 7-byte answer) with the 3.5-character silence after each frame;
and with the floor of the characters alone (:func:`wire_floor`).

``--host-lamps`` runs the lamps in the lamp host (:mod:`tools.sim.hosted_street`:
every lamp the real firmware, all in one MicroPython process on one drop of the
bus), the only way a paced 247-lamp bus fits a small machine; the host's
measured turnaround and broadcast execution time are printed with the figures.
Run as root, the bus and the host get nice -10 (:data:`SIM_NICE`) and real-time
scheduling (``SCHED_FIFO``, :class:`~tools.sim.hosted_street.HostedStreet`; the
text says when the kernel refused it): they stand for a line and lamps with
their own hardware, while the gateway, the broker and the operator side
compete for the shared CPUs as ordinary processes.
Every run also prints the load average and the bus's overflow and collision
counters: a run with either is not a clean figure (run it again).
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.mqtt.topics import Topics
from gateway.transport.modbus_rtu import TURNAROUND
from tools.bench import record
from tools.bench.commands_wire import split_bus_stage
from tools.broker import LocalBroker
from tools.keys import trust
from tools.operator import Signer, build_command
from tools.sim.bus import BITS_PER_CHAR  # the virtual bus paces 11-bit characters, as 8E1 on a real line
from tools.sim.hosted_street import HostedStreet
from tools.sim.street import VirtualStreet
from tools.street_config import write_gateway_toml

SITE = "bench-site"
BROKER_CONFIG = "set_tcp_nodelay true\n"
"""Mosquitto sends small packets at once (its default waits for Nagle: up to 40 ms per hop for a command)."""
SIM_NICE = -10
"""Priority of the bus and the lamp host with ``--host-lamps`` (as root): they stand for hardware with its own CPUs."""
GATEWAY = "bench-gw"


STAGES = (
    ("mqtt", "MQTT (operator to broker to gateway, and the result back)"),
    ("verify", "verification (envelope, signature, scope, replay lookup, plan)"),
    ("durable", "audit `accepted` + replay claim on disk"),
    ("bus", "bus: the write and its read-back, one function-23 transaction (waiting for the line included)"),
    ("line", "- of which waiting for the line and the gateway's handling (bus trace)"),
    ("wire", "- of which the write's transaction on the line, request to answer (bus trace)"),
    ("readback", "separate read-back (a node without function 23, re-reads while a plan settles)"),
    ("record", "audit `executed` + result on disk"),
    ("total", "gateway total (arrival to result published)"),
)
"""The stages of a command's ``ms`` breakdown (gateway.commands.timing), as the table names them."""


def line_limit(nodes: int, baud: int, bits: int = BITS_PER_CHAR) -> float:
    """Seconds the wire needs for a whole-bus command: broadcast, turnaround, one short read per lamp."""
    char = bits / baud
    gap = max(3.5 * char, 0.00175) if baud > 19200 else 3.5 * char
    broadcast = 11 * char + gap  # function 16, one register: 9 + 2 bytes
    per_node = (8 + 7) * char + 2 * gap  # read 1 holding register: request 8, answer 7 bytes
    return broadcast + TURNAROUND + nodes * per_node


def wire_floor(nodes: int, baud: int, bits: int = BITS_PER_CHAR) -> float:
    """Seconds the characters alone take (no frame gaps): the same frames as :func:`line_limit`, back to back.

    The node answers as soon as a request's CRC checks, without first waiting
    out the 3.5-character silence, so a command can beat :func:`line_limit`,
    never this floor.
    """
    char = bits / baud
    return 11 * char + TURNAROUND + nodes * (8 + 7) * char


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of ``values``, nearest rank (the median of five is the third)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def _measure(
    broker: LocalBroker, signer: Signer, node_ids: list[str], rounds: int, bus_rounds: int,
    stages: list[dict[str, float]],
) -> tuple[list[float], list[float], list[dict[str, object]]]:
    topics = Topics(SITE, GATEWAY)
    version = aiomqtt.ProtocolVersion.V5
    single: list[float] = []
    whole: list[float] = []
    failures: list[dict[str, object]] = []
    # The operator's small packets go out at once, as the gateway's do (no Nagle wait for a delayed ACK).
    nodelay = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
    async with aiomqtt.Client(broker.host, broker.port, protocol=version, socket_options=nodelay) as client:
        await client.subscribe(topics.result, qos=1)
        await client.subscribe(topics.data_prefix + "#", qos=0)
        states = topics.root + "/node/"
        await client.subscribe(states + "+/state", qos=0)  # retained: online once polled
        seen: set[str] = set()
        try:
            async with asyncio.timeout(300):  # every lamp has been polled once: the gateway is up
                async for msg in client.messages:
                    topic = str(msg.topic)
                    if topic.startswith(topics.data_prefix):
                        seen.add(topic[len(topics.data_prefix):])
                    elif topic.startswith(states) and cbor2.loads(msg.payload).get("online"):
                        seen.add(topic[len(states):].rsplit("/", 1)[0])
                    if len(seen) >= len(node_ids):
                        break
        except TimeoutError:  # a lamp that never answers is an offline target; measure the rest
            print(f"after 300 s, {len(seen)} of {len(node_ids)} lamps had been polled; going on")
        await client.unsubscribe(topics.data_prefix + "#")
        await client.unsubscribe(states + "+/state")

        async def one(target: str, params: dict[str, object]) -> float:
            command = build_command(target, "dim", params)
            payload = signer.sign(command)
            start = time.perf_counter()
            at = time.monotonic()  # the bus trace's clock
            await client.publish(topics.cmd, payload, qos=1)
            async with asyncio.timeout(600):
                async for msg in client.messages:
                    if str(msg.topic) != topics.result:
                        continue
                    result = cbor2.loads(msg.payload)
                    if result.get("id") == command["id"]:
                        took = time.perf_counter() - start
                        if result.get("status") != "done":
                            failures.append(result)
                        ms = result.get("ms")
                        if isinstance(ms, dict) and target != "bus:bus0":
                            # The rest of the round trip: the broker both ways, the operator's and the
                            # gateway's MQTT clients, the command queue.
                            stages.append({**ms, "mqtt": took * 1000 - float(ms.get("total", 0)),
                                           "at": at, "until": time.monotonic()})
                        return took
            raise TimeoutError("no result")

        for i in range(rounds):
            single.append(await one(node_ids[i % len(node_ids)], {"level": 20 + i % 60}))
        for i in range(bus_rounds):
            whole.append(await one("bus:bus0", {"level": 30 + i % 60}))
    return single, whole, failures


def _listed(result: dict[str, object], key: str) -> list[object]:
    value = result.get(key)
    return value if isinstance(value, list) else []


def _bus_line(bus: dict[str, Any]) -> str:
    """The bus's fault counters: a clean run has none."""
    drops = bus.get("drops", {})
    overflow = sum(int(d.get("overflow", 0)) for d in drops.values())
    master = drops.get("master", {})
    return (f"Bus counters: {bus.get('collisions', '?')} collisions, {overflow} bytes lost to full buffers, "
            f"{bus.get('corrupted', 0)} corrupted, {bus.get('lost', 0)} lost; the master sent "
            f"{master.get('tx', '?')} bytes and received {master.get('rx', '?')}.")


def host_line(host: dict[str, Any]) -> str:
    """What the lamp host measured of itself (whole run, polls included), as one sentence."""
    turn = host.get("turnaround_us", {})
    bcast = host.get("broadcast_us", {})
    gc = host.get("gc", {})
    gc_mean = gc.get("total_us", 0) / max(1, gc.get("n", 0)) / 1000
    return (f"Lamp host: {host.get('frames', 0)} requests ({host.get('broadcasts', 0)} broadcasts), "
            f"{host.get('answered', 0)} answered; turnaround (request's end to answer written, last "
            f"{turn.get('n', 0)}) p50 {turn.get('p50', 0) / 1000:.2f} ms, p99 {turn.get('p99', 0) / 1000:.2f} ms, "
            f"max {turn.get('max', 0) / 1000:.1f} ms; a broadcast executed by all {host.get('lamps', 0)} lamps "
            f"in p50 {bcast.get('p50', 0) / 1000:.0f} ms, max {bcast.get('max', 0) / 1000:.0f} ms; "
            f"{gc.get('n', 0)} collections of the shared heap, mean {gc_mean:.1f} ms, "
            f"max {gc.get('max_us', 0) / 1000:.1f} ms; {host.get('slow', 0)} answers 50 ms or more late; "
            f"the host's event loop woke up to {host.get('lag_max_us', 0) / 1000:.0f} ms late (the process "
            f"kept off the CPU); its framer dropped {host.get('bytes_dropped', 0)} bytes "
            f"({host.get('crc_errors', 0)} CRC errors).")


def run_commands_bench(
    *, nodes: int = 8, rounds: int = 50, baud: int = 115200, paced: bool = False, bus_rounds: int = 10,
    write_docs: bool = False, heapsize: str | None = None, interval: float = 5.0, host_lamps: bool = False,
) -> int:
    """Run the bench, print the figures (and record them in docs/performance.md); returns the exit code."""
    signer = Signer(Ed25519PrivateKey.generate(), "bench")
    load_before = os.getloadavg()
    # The lamp host's flash folders go to RAM (tmpfs) when there is one: a flash write stops one lamp on a
    # real bus, but all of them in the host, and a disk shared with other work can hold a write for 100s of ms.
    ram = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="bench-commands-") as tmp, \
            LocalBroker("mosquitto", extra_config=BROKER_CONFIG) as broker, \
            tempfile.TemporaryDirectory(prefix="bench-commands-", dir=ram if ram.is_dir() else None) as flash:
        work = Path(tmp)
        street: VirtualStreet
        if host_lamps:
            street = HostedStreet(Path(flash) / "street", nodes=nodes, baud=baud, paced=paced,
                                  heapsize=heapsize or "16M", nice=SIM_NICE if os.geteuid() == 0 else 0,
                                  realtime=True)
        else:
            street = VirtualStreet(work / "street", nodes=nodes, baud=baud, paced=paced, heapsize=heapsize or "128K")
        trace = Path(flash) / "bus.trace.jsonl"
        street.bus_args = ["--trace", str(trace)]  # splits the one-lamp commands' bus stage (commands_wire)
        with street:
            began = time.monotonic()
            manifest = street.start(timeout=max(60.0, nodes * 2.0))
            started = time.monotonic() - began
            config = write_gateway_toml(
                work / "gateway.toml", manifest, broker_url=broker.url, protocol=broker.protocol,
                site=SITE, gateway=GATEWAY, interval=interval,
            )
            trust(config, work, signer.kid, signer.key)
            log = (work / "gateway.log").open("wb")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "run", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
            try:
                stages: list[dict[str, float]] = []
                single, whole, failures = asyncio.run(
                    _measure(broker, signer, [n["id"] for n in manifest["nodes"]], rounds, bus_rounds, stages)
                )
            finally:
                daemon.terminate()
                daemon.wait(30)
                log.close()
            time.sleep(2.5)  # the bus and the host write their counters every 1-2 s
            counters = street.bus_stats()
            host = street.host_stats() if isinstance(street, HostedStreet) else {}
        if trace.exists():
            split_bus_stage(trace, stages)
    load_after = os.getloadavg()
    limit = line_limit(nodes, baud)
    where = "one process and one drop each"
    if isinstance(street, HostedStreet):
        where = "in one lamp host process on one drop"
        where += f", bus and host (the simulated line and lamps) at {street.scheduling}"
    lines = [
        f"{nodes} lamps ({where}) on one bus at {baud} bit/s "
        f"({'paced at the line rate' if paced else 'unpaced ptys'}), "
        f"gateway polling every lamp each {interval:g} s; street started in {started:.0f} s; "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after (2 cores).",
        "",
        "| command | runs | p50 | p99 | max |",
        "|---|---|---|---|---|",
    ]
    for name, values in (("one lamp (dim, read back)", single), (f"whole bus, {nodes} lamps (broadcast, "
                                                                 "read back each)", whole)):
        if values:
            lines.append(
                f"| {name} | {len(values)} | {percentile(values, 0.5) * 1000:.0f} ms | "
                f"{percentile(values, 0.99) * 1000:.0f} ms | {max(values) * 1000:.0f} ms |"
            )
    if stages:
        lines += ["", "Where a one-lamp command's time went (the gateway's own timing in each result, "
                      "`ms`; mqtt is the round trip less the gateway's total):", "",
                  "| stage | p50 | p99 |", "|---|---|---|"]
        for stage, what in STAGES:
            values = [float(s[stage]) for s in stages if stage in s]
            if values:
                lines.append(f"| {what} | {percentile(values, 0.5):.1f} ms | {percentile(values, 0.99):.1f} ms |")
    if whole:
        median = percentile(whole, 0.5)
        floor = wire_floor(nodes, baud)
        lines += ["", f"Line-rate limit of the whole-bus command ({BITS_PER_CHAR}-bit characters, {baud} bit/s): "
                      f"{limit * 1000:.0f} ms; measured median {median * 1000:.0f} ms "
                      f"({median / limit:.1f}x the limit). The characters alone, without frame gaps: "
                      f"{floor * 1000:.0f} ms ({median / floor:.1f}x)."]
    lines += ["", _bus_line(counters)]
    if host:
        lines += ["", host_line(host)]
    if failures:
        lone = [f for f in failures if len(_listed(f, "unconfirmed")) + len(_listed(f, "confirmed")) <= 1]
        bus = [f for f in failures if f not in lone]
        counts = []
        if lone:
            counts.append(f"{len(lone)} of {len(single)} one-lamp commands")
        if bus:
            missed = ", ".join(str(len(_listed(f, "unconfirmed"))) for f in bus)
            counts.append(f"{len(bus)} of {len(whole)} whole-bus commands (lamps unconfirmed: {missed})")
        shown = "; ".join(f"{f.get('detail', f.get('status'))}"[:160] for f in failures[:2])
        lines += ["", f"Not done: {' and '.join(counts)}; e.g. {shown}"]
    text = "\n".join(lines)
    print(text)
    if write_docs:
        argv = f"streetedge bench commands --nodes {nodes} --rounds {rounds} --bus-rounds {bus_rounds} --baud {baud}"
        argv += " --paced" if paced else ""
        argv += " --host-lamps" if host_lamps else ""
        hosted = " (lamp host)" if host_lamps else ""
        record(f"bench-commands-{nodes}-{baud}{'-paced' if paced else ''}{'-hosted' if host_lamps else ''}",
               f"Command latency: {nodes} lamps at {baud} bit/s{' (paced)' if paced else ''}{hosted}", argv, text)
    return 1 if failures else 0
