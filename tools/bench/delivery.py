"""``streetedge bench delivery``: upstream bytes per reading, backlog drain rate, poll-to-broker latency.

1. Bytes per reading, per profile, for the sizing case: 32 lamps each polled
   once a minute. The polls are real: a virtual street of 32 lamp nodes (the
   firmware on the unix port) is read through the gateway's own poller; the
   polls are then timed as a 60-s schedule spreads them (node i at i x 60/32 s)
   and encoded by the gateway's own encoders, one compact message per minute
   (``batch_interval = 60``) or one SenML pack per poll. Both the payload and the
   MQTT PUBLISH packet (fixed header, topic, packet id, MQTT 5 properties) are
   counted; TCP and TLS framing are not. Births (once per connection) apart.
2. Backlog drain: an outbox filled with 20,000 polls while no broker was
   there; the gateway process connects and replays it; polls/s from the first
   to the last data message the observer receives, and the gateway's CPU.
3. Latency from a poll (its time stamp) to the observer receiving it, live, on
   one machine clock: SenML (published as polled) and compact (1-s batches).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cbor2

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.delivery import birth, compact
from gateway.delivery.outbox import Kind, Outbox, OutboxRecord
from gateway.delivery.senml_encoder import PackEncoder
from gateway.delivery.senml_records import encode_poll, poll_raws, poll_seq
from gateway.polling.poller import BusPoller
from gateway.service.config import parse_config
from gateway.transport.bus import open_bus
from protocols import senml
from tools.bench import cpu_seconds, record
from tools.broker import LocalBroker
from tools.mqtt_watch import MqttWatch, Seen
from tools.sim.street import VirtualStreet
from tools.street_config import gateway_toml

SITE, GATEWAY = "bench", "gw"
ROOT = f"streetedge/v1/{SITE}/{GATEWAY}"
LAMP = load_role("lamp")
REGISTERS = [r for t in (HOLDING, INPUT) for r in LAMP.registers if r.table == t]
SCHEMA = birth.schema_of(LAMP)


# -- 1. bytes per reading ----------------------------------------------------------------------------------------


def capture(work: Path, nodes: int = 32, rounds: int = 3) -> list[list[list[int | float]]]:
    """Raw values of ``rounds`` polls of every node of a ``nodes``-lamp virtual street: ``[round][node]``."""
    with VirtualStreet(work / "street", nodes=nodes, heapsize="256K") as street:
        manifest = street.start(timeout=180)
        config = parse_config(gateway_toml(manifest, broker_url="mqtt://127.0.0.1:1", site=SITE, gateway=GATEWAY))
        got: dict[str, list[int | float]] = {}

        async def poll_all() -> list[list[list[int | float]]]:
            bus = open_bus(config.bus[0])
            poller = BusPoller(bus, config.node, {}, lambda node, _t, r: got.__setitem__(node.id, poll_raws(
                REGISTERS, r)))
            out = []
            try:
                for _ in range(rounds):
                    got.clear()
                    for node in config.node:
                        for _attempt in range(3):
                            if await poller.poll(node):
                                break
                    out.append([got[n.id] for n in config.node if n.id in got])
                    await asyncio.sleep(1.0)
            finally:
                bus.close()
            return out

        return asyncio.run(poll_all())


def publish_size(topic: str, payload: int, properties: list[tuple[str, str]] | None = None, v5: bool = True) -> int:
    """Bytes of an MQTT QoS 1 PUBLISH packet: fixed header, topic, packet id, properties, payload."""
    props = sum(1 + 2 + len(k) + 2 + len(v) for k, v in (properties or []))
    remaining = 2 + len(topic.encode()) + 2 + payload + ((_varint_len(props) + props) if v5 else 0)
    return 1 + _varint_len(remaining) + remaining


def _varint_len(n: int) -> int:
    size = 1
    while n >= 128:
        n >>= 7
        size += 1
    return size


def sizes(polls: list[list[list[int | float]]], minute: float = 60.0) -> dict[str, Any]:
    """Payload and PUBLISH bytes per reading of both profiles for polls spread over a minute each round."""
    nodes = len(polls[0])
    table = [(f"lamp-{i + 1}", SCHEMA) for i in range(nodes)]
    gb = birth.gateway_birth(site="district-7", gateway="cabinet-12", session=1, ts=0.0, profile="compact",
                             nodes=table, capabilities={SCHEMA.id: birth.capabilities(LAMP)})
    gb_decoded = cbor2.loads(birth.encode(gb))
    readings = payload_c = wire_c = payload_s = wire_s = 0
    t0 = 1_798_761_600_000
    for k, round_ in enumerate(polls):
        rows = [compact.Row(i, t0 + int((k * minute + i * minute / nodes) * 1000) + 37 * i % 50, raws)
                for i, raws in enumerate(round_)]
        message = compact.encode(rows, gb_decoded, seq=k + 1)
        payload_c += len(message)
        wire_c += publish_size("streetedge/v1/district-7/cabinet-12/compact", len(message))
        for row in rows:
            node = table[row.node][0]
            pack = PackEncoder("district-7", node).encode(row.time_ms / 1000, list(zip(REGISTERS, row.raws,
                                                                                     strict=True)))
            payload_s += len(pack)
            props = [("seq", str(100 + row.node)), ("session", "1")]
            wire_s += publish_size(f"streetedge/v1/district-7/cabinet-12/data/{node}", len(pack), props)
        readings += len(rows) * len(REGISTERS)
    node_births = sum(len(birth.encode(birth.node_birth(
        node=n, schema=SCHEMA, session=1, seq=i + 1, ts=0.0, firmware=0x0100,
    ))) for i, (n, _) in enumerate(table))
    return {
        "nodes": nodes, "registers": len(REGISTERS), "minutes": len(polls), "readings": readings,
        "compact_payload": payload_c / readings, "compact_wire": wire_c / readings,
        "senml_payload": payload_s / readings, "senml_wire": wire_s / readings,
        "compact_message": payload_c / len(polls), "gateway_birth": len(birth.encode(gb)),
        "node_births": node_births,
    }


def spread(polls: list[list[list[int | float]]], seed: int = 7) -> list[list[list[int | float]]]:
    """The same polls with the lamps made unlike each other, as on a real street.

    The virtual street's lamps are near twins (same physics, booted together), which flatters the
    columns. Here every 32-bit register (counters: seq, energy, uptime, burn time ...) gets a random value
    per lamp, and power, voltage, current and temperature a random spread.
    """
    import random

    rng = random.Random(seed)
    spreads = {"power": 8, "voltage": 15, "current": 4, "temperature": 20}
    offsets = [{r.name: rng.randint(1000, 3_000_000) for r in REGISTERS if r.width == 2} for _ in polls[0]]
    out = []
    for round_ in polls:
        rows = []
        for i, raws in enumerate(round_):
            row = list(raws)
            for j, reg in enumerate(REGISTERS):
                if reg.name in offsets[i] and reg.type != 5:
                    row[j] = min(int(reg.maximum), int(row[j]) + offsets[i][reg.name])
                elif reg.name in spreads:
                    row[j] = max(int(reg.minimum), min(int(reg.maximum), int(row[j]) + rng.randint(
                        -spreads[reg.name], spreads[reg.name])))
            rows.append(row)
        out.append(rows)
    return out


# -- 2. backlog drain ------------------------------------------------------------------------------------------------


def _prefill(path: Path, polls: list[list[int | float]], count: int, nodes: int) -> None:
    with Outbox(path) as box:
        batch = []
        t0 = time.time() - count
        for i in range(count):
            node = f"lamp-{i % nodes + 1}"
            raws = list(polls[i % len(polls)])
            time_ms = int((t0 + i / nodes) * 1000)
            seq = 10_000_000 + i
            raws[[r.name for r in REGISTERS].index("seq")] = seq
            batch.append(OutboxRecord(node, poll_seq(REGISTERS, raws, time_ms), Kind.READING, time_ms / 1000,
                                      encode_poll(SCHEMA.id, time_ms, raws)))
            if len(batch) == 1000:
                box.put_many(batch)
                batch = []
        box.put_many(batch)


class _Rows:
    """Counts the polls in data messages (either profile) as the observer receives them, and their latency."""

    def __init__(self) -> None:
        self.count = 0
        self.first = self.last = 0.0
        self.latency: list[float] = []
        self.births: dict[bytes, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, seen: Seen) -> None:
        now = time.time()
        if seen.topic == ROOT + "/birth":
            body = cbor2.loads(seen.payload)
            self.births[body["birth"]] = body
            return
        if seen.topic == ROOT + "/compact":
            message = compact.decode(seen.payload, self.births[cbor2.loads(seen.payload)[3]])
            times = [t / 1000 for _, t, _ in message.rows]
        elif seen.topic.startswith(ROOT + "/data/"):
            times = [senml.from_labels(cbor2.loads(seen.payload))[0]["bt"]]
        else:
            return
        with self._lock:
            if not self.count:
                self.first = seen.at
            self.count += len(times)
            self.last = seen.at
            self.latency += [now - t for t in times]


def _gateway(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "-c", str(config)], stdout=out,
                                stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def drain(work: Path, polls: list[list[int | float]], *, count: int, profile: str, rate: float) -> dict[str, float]:
    """Replay ``count`` stored polls through a gateway process; polls/s, readings/s and CPU per 1000 polls."""
    nodes = 32
    outbox = work / f"drain-{profile}-{rate:g}.db"
    _prefill(outbox, polls, count, nodes)
    manifest = {"buses": [{"name": "bus0", "device": str(work / "no-such-tty"), "baud": 19200}],
                "nodes": [{"id": f"lamp-{i + 1}", "unit": i + 1, "role": "lamp", "bus": "bus0"} for i in range(nodes)]}
    with LocalBroker("mosquitto") as broker:
        config = work / f"drain-{profile}.toml"
        config.write_text(gateway_toml(manifest, broker_url=broker.url, site=SITE, gateway=GATEWAY, interval=60.0)
                          + f'\n[http]\nenabled = false\n\n[delivery]\noutbox = "{outbox}"\nprofile = "{profile}"\n'
                          f"drain_rate = {rate}\nbatch_max = 500\n")
        rows = _Rows()
        with MqttWatch(broker.host, broker.port, ROOT + "/#", keep=False, on_message=rows):
            proc = _gateway(config, work / f"drain-{profile}.log")
            try:
                deadline = time.monotonic() + max(600.0, 3 * count / rate)
                while rows.count < count:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"drain stalled at {rows.count}/{count}: "
                                           f"{(work / f'drain-{profile}.log').read_text()[-2000:]}")
                    time.sleep(0.05)
                cpu = cpu_seconds(proc.pid)
            finally:
                _stop(proc)
    seconds = rows.last - rows.first
    return {"polls_per_s": count / seconds, "readings_per_s": count * len(REGISTERS) / seconds,
            "seconds": seconds, "cpu_per_1000": 1000 * cpu / count}


# -- 3. latency -----------------------------------------------------------------------------------------------------


def latency(work: Path, *, profile: str, seconds: float = 15.0, nodes: int = 4) -> dict[str, float]:
    """Poll time to arrival at the observer, live (percentiles in ms)."""
    with VirtualStreet(work / f"street-{profile}", nodes=nodes, heapsize="256K") as street, \
            LocalBroker("mosquitto") as broker:
        manifest = street.start(timeout=120)
        config = work / f"latency-{profile}.toml"
        config.write_text(gateway_toml(manifest, broker_url=broker.url, site=SITE, gateway=GATEWAY, interval=0.5)
                          + f'\n[http]\nenabled = false\n\n[delivery]\noutbox = "{work / f"lat-{profile}.db"}"\n'
                          f'profile = "{profile}"\nbatch_interval = 1.0\n')
        rows = _Rows()
        with MqttWatch(broker.host, broker.port, ROOT + "/#", keep=False, on_message=rows):
            proc = _gateway(config, work / f"latency-{profile}.log")
            try:
                time.sleep(3.0)
                rows.latency.clear()
                time.sleep(seconds)
            finally:
                _stop(proc)
    ms = sorted(1000 * x for x in rows.latency)
    return {"p50": statistics.median(ms), "p95": ms[int(0.95 * (len(ms) - 1))], "max": ms[-1], "n": len(ms)}


def event_latency(work: Path, *, restarts: int = 8, nodes: int = 4) -> dict[str, float]:
    """Node event to broker: a node's power is cut and restored; from its ready line to its boot event arriving.

    The gateway notices new events from the next poll (every 0.5 s here), reads the event log and
    publishes at once; the figure includes that poll delay.
    """
    arrivals: list[tuple[str, float]] = []

    def on_event(seen: Seen) -> None:
        if "/event/" in seen.topic:
            records = senml.resolve(senml.from_labels(cbor2.loads(seen.payload)))
            if any(r["n"].endswith(":event") and r.get("vs") == "boot" for r in records):
                arrivals.append((seen.topic.rsplit("/", 1)[1], time.monotonic()))

    with VirtualStreet(work / "street-events", nodes=nodes, heapsize="256K") as street, \
            LocalBroker("mosquitto") as broker:
        manifest = street.start(timeout=120)
        config = work / "events.toml"
        config.write_text(gateway_toml(manifest, broker_url=broker.url, site=SITE, gateway=GATEWAY, interval=0.5)
                          + f'\n[http]\nenabled = false\n\n[delivery]\noutbox = "{work / "events.db"}"\n')
        latencies = []
        with MqttWatch(broker.host, broker.port, ROOT + "/event/#", keep=False, on_message=on_event):
            proc = _gateway(config, work / "events.log")
            try:
                time.sleep(5.0)  # the boot events of the first start go out
                units = list(street.nodes)
                for k in range(restarts):
                    unit = units[k % len(units)]
                    node_id = street.node(unit).id
                    street.kill_node(unit)
                    street.start_node(unit, wait=True)
                    ready = time.monotonic()
                    deadline = ready + 30
                    while not any(n == node_id and t >= ready for n, t in arrivals) and time.monotonic() < deadline:
                        time.sleep(0.01)
                    got = [t for n, t in arrivals if n == node_id and t >= ready]
                    if got:
                        latencies.append(1000 * (got[0] - ready))
                    time.sleep(1.0)
            finally:
                _stop(proc)
    ms = sorted(latencies)
    if not ms:
        return {"p50": float("nan"), "p95": float("nan"), "max": float("nan"), "n": 0}
    return {"p50": statistics.median(ms), "p95": ms[int(0.95 * (len(ms) - 1))], "max": ms[-1], "n": len(ms)}


# -- the bench ------------------------------------------------------------------------------------------------------


def run_delivery_bench(*, polls: int = 20_000, write_docs: bool = False) -> int:
    """Measure, print, and with ``write_docs`` record in docs/performance.md."""
    with tempfile.TemporaryDirectory(prefix="streetedge-bench-delivery-") as tmp:
        work = Path(tmp)
        captured = capture(work)
        size = sizes(captured)
        size["spread"] = sizes(spread(captured))
        print(json.dumps(size))
        flat = [p for round_ in captured for p in round_]
        drains = {
            "compact, unlimited": drain(work, flat, count=polls, profile="compact", rate=1e6),
            "senml, unlimited": drain(work, flat, count=polls // 4, profile="senml", rate=1e6),
            "compact, drain_rate 200": drain(work, flat, count=4000, profile="compact", rate=200.0),
        }
        print(json.dumps(drains))
        lat = {p: latency(work, profile=p) for p in ("senml", "compact")}
        lat["event"] = event_latency(work)
        print(json.dumps(lat))
    text = _table(size, drains, lat, polls)
    print(text)
    if write_docs:
        record("bench delivery", "Delivery: bytes per reading, backlog drain, latency",
               f"streetedge bench delivery --polls {polls} --write-docs", text)
    return 0


def _table(size: dict[str, Any], drains: dict[str, dict[str, float]], lat: dict[str, dict[str, float]],
           polls: int) -> str:
    n, regs = size["nodes"], size["registers"]
    lines = [
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores (shared with other work).",
        "",
        f"Bytes per reading: {n} lamps x {regs} registers, each lamp polled once a minute, "
        f"{size['minutes']} minutes of real polls of the virtual street ({size['readings']:,} readings).",
        "",
        "| profile | payload bytes / reading | MQTT PUBLISH bytes / reading |",
        "|---|---:|---:|",
        f"| compact (one message a minute, {size['compact_message']:.0f} bytes) | {size['compact_payload']:.2f} "
        f"| {size['compact_wire']:.2f} |",
        f"| SenML-CBOR (one pack per poll, MQTT 5 seq/session properties) | {size['senml_payload']:.2f} "
        f"| {size['senml_wire']:.2f} |",
        f"| compact, lamps made unlike (random counters, spread measurements) "
        f"| {size['spread']['compact_payload']:.2f} | {size['spread']['compact_wire']:.2f} |",
        f"| SenML-CBOR, lamps made unlike | {size['spread']['senml_payload']:.2f} "
        f"| {size['spread']['senml_wire']:.2f} |",
        "",
        f"Once per connection: gateway birth {size['gateway_birth']:,} bytes, {n} node births "
        f"{size['node_births']:,} bytes.",
        "",
        f"Backlog drain ({polls:,} stored polls unless said; gateway process, Mosquitto, observer decoding):",
        "",
        "| replay | polls/s | readings/s | gateway CPU-s per 1000 polls |",
        "|---|---:|---:|---:|",
    ]
    for name, d in drains.items():
        lines.append(f"| {name} | {d['polls_per_s']:,.0f} | {d['readings_per_s']:,.0f} | {d['cpu_per_1000']:.3f} |")
    lines += ["", "Latency to the broker (observer), live, 4 lamps polled every 0.5 s: a reading from its poll time; "
              "a node event (a boot after a power cut) from the node's ready line, which includes waiting for the "
              "next poll to show it:", "",
              "| what | p50 ms | p95 ms | max ms | samples |", "|---|---:|---:|---:|---:|"]
    labels = {"senml": "reading, SenML (published as polled)", "compact": "reading, compact (batch_interval 1 s)",
              "event": "node event (boot), either profile"}
    for name, d in lat.items():
        label = labels[name]
        lines.append(f"| {label} | {d['p50']:.0f} | {d['p95']:.0f} | {d['max']:.0f} | {d['n']:,.0f} |")
    return "\n".join(lines)
