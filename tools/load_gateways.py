"""What a gateway costs a broker: many simulated gateways against a local Mosquitto, measured.

``python -m tools.load_gateways --gateways 1000 --seconds 60`` (or ``streetedge
bench cluster``) starts a Mosquitto of its own and plays ``--gateways``
gateways against it, each as the real gateway behaves on the wire: one MQTT 5
connection with its Will, at connect the retained state, gateway birth, node
births and delivery counters, then one compact message per interval holding
one poll of each of its lamps (payloads made by the gateway's own encoders from
32 lamps of the lamp register map, values spread as on a real street). One
consumer subscribed to ``streetedge/v1/#`` receives everything, as a city's
data platform would.

With ``--tls`` the same fleet also runs over TLS (``mqtts``: a server
certificate and one client certificate per connection, from a CA made for the
run, :mod:`tools.pki`), against the same broker's TLS listener; the broker's CPU
per 1000 messages is compared with the plaintext run, and
:mod:`tools.bench.tls_cost` measures the broker's CPU per TLS handshake and the
bytes per handshake and per message, against plaintext connections in the same
run. The consumer stays on the plaintext listener: only the gateways' side changes.

Time is compressed: the gateways publish every ``--interval`` seconds (1 s by
default) instead of 60, so that the window holds enough messages to measure
the broker's CPU per message; the per-gateway figures for the 60-s case are
scaled from it. Measured over the steady window (after every gateway has
connected): the broker's CPU seconds per 1000 messages in (each also goes out
once, to the consumer), its resident memory per connected gateway (retained
births included), the messages and bytes per second each gateway sends.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import resource
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.delivery import birth, compact
from tools.bench import cpu_seconds, record
from tools.bench.delivery import publish_size
from tools.bench.tls_cost import HandshakeCost, handshakes, per_message
from tools.broker import LocalBroker, free_port
from tools.pki import Pki

DOCS = Path(__file__).resolve().parents[1] / "docs" / "broker-cluster.md"
LAMP = load_role("lamp")
REGISTERS = [r for t in (HOLDING, INPUT) for r in LAMP.registers if r.table == t]
SCHEMA = birth.schema_of(LAMP)


@dataclass(frozen=True)
class Traffic:
    """What one simulated gateway publishes: at connect (retained), and once per interval."""

    site: str
    gateway: str
    opening: list[tuple[str, bytes]]
    periodic: tuple[str, bytes]

    @property
    def root(self) -> str:
        """The gateway's topic root."""
        return f"streetedge/v1/{self.site}/{self.gateway}"


def traffic(index: int, lamps: int, rng: random.Random) -> Traffic:
    """The messages of gateway ``index``: births for ``lamps`` lamps and one compact message of their polls."""
    site, gw = f"site-{index // 100}", f"gw-{index}"
    root = f"streetedge/v1/{site}/{gw}"
    table = [(f"lamp-{i + 1}", SCHEMA) for i in range(lamps)]
    gb = birth.gateway_birth(site=site, gateway=gw, session=1, ts=time.time(), profile="compact", nodes=table,
                             capabilities={SCHEMA.id: birth.capabilities(LAMP)})
    opening = [(root + "/state", birth.state(online=True, session=1, ts=time.time())),
               (root + "/birth", birth.encode(gb))]
    opening += [(f"{root}/birth/{n}", birth.encode(birth.node_birth(
        node=n, schema=SCHEMA, session=1, seq=i + 1, ts=time.time(), firmware=0x0100))) for i, (n, _) in
        enumerate(table)]
    opening.append((root + "/delivery", cbor2.dumps({"session": 1, "seq": lamps + 1, "stored": 0,
                                                    "dropped": {"readings": 0, "events": 0}, "depth": 0})))
    t0 = int(time.time() * 1000)
    rows = []
    for i in range(lamps):
        raws: list[int | float] = []
        for reg in REGISTERS:
            if reg.type == 5:
                raws.append(0.0)
            elif reg.width == 2:
                raws.append(rng.randint(int(reg.minimum), min(int(reg.maximum), int(reg.minimum) + 3_000_000)))
            else:
                raws.append(int(reg.minimum) + rng.randint(0, min(20, int(reg.maximum) - int(reg.minimum))))
        rows.append(compact.Row(i, t0 + i * 1875, raws))
    message = compact.encode(rows, cbor2.loads(birth.encode(gb)), seq=lamps + 2)
    return Traffic(site, gw, opening, (root + "/compact", message))


class Consumer:
    """The city's data platform: one subscriber to everything, counting messages and bytes."""

    def __init__(self, port: int) -> None:
        self.messages = 0
        self.bytes = 0
        self._lock = threading.Lock()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("streetedge/v1/#", qos=1)
        subscribed.wait(10)

    def _on_message(self, _c: paho.Client, _u: object, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages += 1
            self.bytes += len(msg.payload)

    def counts(self) -> tuple[int, int]:
        """Messages and payload bytes received so far."""
        with self._lock:
            return self.messages, self.bytes

    def close(self) -> None:
        """Disconnect."""
        # Disconnect first: it wakes paho's thread, which would otherwise sleep out its 1 s select.
        self.client.disconnect()
        self.client.loop_stop()


class Fleet:
    """``count`` simulated gateways, each an aiomqtt connection publishing its traffic."""

    def __init__(self, port: int, traffics: list[Traffic], interval: float,
                 context: ssl.SSLContext | None = None) -> None:
        self.port = port
        self.context = context
        self.traffics = traffics
        self.interval = interval
        self.connected = 0
        self.sent = 0
        self.sent_bytes = 0
        self.stop = asyncio.Event()

    async def run(self) -> None:
        """Connect every gateway (a few at a time, as a city's cabinets come up) and publish until stopped."""
        gate = asyncio.Semaphore(50)
        async with asyncio.TaskGroup() as group:
            for t in self.traffics:
                group.create_task(self._one(t, gate))

    async def _one(self, t: Traffic, gate: asyncio.Semaphore) -> None:
        will = aiomqtt.Will(t.root + "/state", birth.state(online=False, session=1), qos=1, retain=True)
        async with gate:
            client = aiomqtt.Client("127.0.0.1", self.port, identifier=f"streetedge-{t.site}-{t.gateway}",
                                    protocol=aiomqtt.ProtocolVersion.V5, will=will, keepalive=60,
                                    tls_context=self.context)
            await client.__aenter__()
        try:
            for topic, payload in t.opening:
                await client.publish(topic, payload, qos=1, retain=True)
            self.connected += 1
            await asyncio.sleep(random.uniform(0, self.interval))  # cabinets are not in step
            topic, payload = t.periodic
            while not self.stop.is_set():
                await client.publish(topic, payload, qos=1)
                self.sent += 1
                self.sent_bytes += len(payload)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), self.interval)
        finally:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)


def rss_kb(pid: int) -> int:
    """Resident memory of a process, KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Tls:
    """A CA, the broker's TLS listener settings and the gateways' client context, in ``folder``."""

    def __init__(self, folder: Path) -> None:
        folder.chmod(0o755)  # Mosquitto reads the files after dropping root privileges
        self.pki = Pki(folder)
        cert, key = self.pki.issue("127.0.0.1", server=True)
        self.port = free_port()
        self.listener = (f"listener {self.port} 127.0.0.1\ncafile {self.pki.ca}\ncertfile {cert}\nkeyfile {key}\n"
                         "require_certificate true\n")
        client_cert, client_key = self.pki.issue("streetedge-load-gateway")
        self.context = ssl.create_default_context(cafile=str(self.pki.ca))
        self.context.load_cert_chain(str(client_cert), str(client_key))


async def measure(gateways: int, lamps: int, seconds: float, interval: float,
                  tls: Tls | None = None) -> dict[str, float]:
    """Run the fleet against a fresh Mosquitto (over TLS if ``tls``); the figures of the steady window."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it: a socket per gateway
    rng = random.Random(1)
    traffics = [traffic(i, lamps, rng) for i in range(gateways)]
    extra = "max_inflight_messages 100\nmax_queued_messages 100000\n" + (tls.listener if tls else "")
    with LocalBroker("mosquitto", extra_config=extra) as broker:
        assert broker._proc is not None
        pid = broker._proc.pid
        rss_empty = rss_kb(pid)
        consumer = Consumer(broker.port)
        fleet = Fleet(tls.port if tls else broker.port, traffics, interval, tls.context if tls else None)
        runner = asyncio.create_task(fleet.run())
        started = time.monotonic()
        while fleet.connected < gateways:
            if runner.done():
                runner.result()
            if time.monotonic() - started > 600:
                raise RuntimeError(f"only {fleet.connected} of {gateways} gateways connected in 600 s")
            await asyncio.sleep(0.2)
        connect_s = time.monotonic() - started
        await asyncio.sleep(interval * 2)  # every gateway is publishing
        c0, (m0, b0), s0, t0 = cpu_seconds(pid), consumer.counts(), fleet.sent, time.monotonic()
        await asyncio.sleep(seconds)
        c1, (m1, b1), s1, t1 = cpu_seconds(pid), consumer.counts(), fleet.sent, time.monotonic()
        rss = rss_kb(pid)
        fleet.stop.set()
        await runner
        consumer.close()
    window = t1 - t0
    inbound = s1 - s0
    periodic = traffics[0].periodic
    wire = publish_size(periodic[0], len(periodic[1]))
    opening = sum(publish_size(topic, len(payload)) for topic, payload in traffics[0].opening)
    return {
        "gateways": gateways, "lamps": lamps, "interval": interval, "window": window, "connect_s": connect_s,
        "in_per_s": inbound / window, "out_per_s": (m1 - m0) / window, "consumer_bytes_per_s": (b1 - b0) / window,
        "cpu_per_1000": 1000 * (c1 - c0) / max(inbound, 1), "cpu_share": (c1 - c0) / window,
        "rss_per_gateway_kb": (rss - rss_empty) / gateways, "rss_mb": rss / 1024,
        "message_bytes": len(periodic[1]), "message_wire": wire, "opening_wire": opening,
    }


def table(f: dict[str, float]) -> str:
    """The figures as Markdown, with the 60-s case derived."""
    per_gw_60 = 1 / 60
    cpu_60 = f["cpu_per_1000"] / 1000 * per_gw_60  # CPU-s per second per gateway at one message a minute
    return "\n".join([
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores (shared), Mosquitto 2.0 on loopback, no TLS; "
        f"{f['gateways']:,.0f} gateways of {f['lamps']:.0f} lamps (the lamp map's {len(REGISTERS)} registers), "
        f"each publishing one compact message every {f['interval']:g} s; one consumer of everything; "
        f"{f['window']:.0f} s window; all connected in {f['connect_s']:.0f} s.",
        "",
        "| figure | measured | per gateway at 1 message a minute |",
        "|---|---:|---:|",
        f"| connections | {f['gateways']:,.0f} | 1 (plus its Will, retained state, {f['lamps']:.0f} + 2 "
        f"retained births and counters) |",
        f"| messages in / out per second | {f['in_per_s']:,.0f} / {f['out_per_s']:,.0f} | {per_gw_60:.4f} in, "
        f"the same out per consumer |",
        f"| bytes per message (payload / MQTT PUBLISH) | {f['message_bytes']:,.0f} / {f['message_wire']:,.0f} "
        f"| {f['message_wire'] * per_gw_60:.1f} B/s in |",
        f"| bytes at each connect (retained state, births, counters) | | {f['opening_wire']:,.0f} B |",
        f"| broker CPU per 1000 messages in (each delivered once) | {f['cpu_per_1000']:.3f} CPU-s "
        f"| {1e6 * cpu_60:.1f} CPU-µs/s ({f['cpu_share']:.2f} cores at the measured rate) |",
        f"| broker resident memory | {f['rss_mb']:.0f} MB | {f['rss_per_gateway_kb']:.1f} KB |",
    ])


def wire_costs(tls: Tls, sample: Traffic, count: int) -> dict[str, Any]:
    """Handshakes and per-message bytes, plaintext and TLS, against one fresh broker with both listeners."""
    will = (sample.root + "/state", birth.state(online=False, session=1))
    out: dict[str, Any] = {}
    with LocalBroker("mosquitto", extra_config=tls.listener) as broker:
        assert broker._proc is not None
        pid = broker._proc.pid
        for name, port, context in (("plain", broker.port, None), ("tls", tls.port, tls.context)):
            handshakes(port, context, pid, max(count // 10, 5), will, "warm-up")  # caches, allocator
            out[name] = handshakes(port, context, pid, count, will, f"streetedge-{sample.site}-{sample.gateway}")
            out[name + "_message"] = per_message(port, context, *sample.periodic, count=200)
    return out


def tls_table(plain: dict[str, float], tls: dict[str, float], wire: dict[str, Any]) -> str:
    """The TLS figures against plaintext, as Markdown."""
    p: HandshakeCost = wire["plain"]
    t: HandshakeCost = wire["tls"]
    storm = t.cpu_ms * plain["gateways"] / 1000
    return "\n".join([
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores (shared), Mosquitto 2.0 on loopback, "
        f"{ssl.OPENSSL_VERSION}; TLS 1.3 with ECDSA P-256 certificates (server and client, one CA), "
        "the client certificate required; no session resumption (the gateway does not resume). "
        f"Connections: {t.count} opened one after another per mode (TCP, TLS, CONNECT with the gateway's Will, "
        f"CONNACK, DISCONNECT). Fleet: {plain['gateways']:,.0f} gateways of {plain['lamps']:.0f} lamps, "
        f"one compact message every {plain['interval']:g} s each, {plain['window']:.0f} s window per mode; "
        "the consumer on the plaintext listener.",
        "",
        "| figure | plaintext | TLS | TLS adds |",
        "|---|---:|---:|---:|",
        f"| broker CPU per connection | {p.cpu_ms:.2f} ms | {t.cpu_ms:.2f} ms | {t.cpu_ms - p.cpu_ms:.2f} ms |",
        f"| bytes per connection, both ways | {p.sent + p.received:,.0f} | {t.sent + t.received:,.0f} "
        f"| {t.sent + t.received - p.sent - p.received:,.0f} |",
        f"| of which the TLS handshake, client to broker / broker to client | | "
        f"{t.handshake_sent:,.0f} / {t.handshake_received:,.0f} | |",
        f"| bytes per compact message ({len(wire['payload']):,} B payload) with its PUBACK "
        f"| {wire['plain_message']:,.0f} | {wire['tls_message']:,.0f} "
        f"| {wire['tls_message'] - wire['plain_message']:,.0f} |",
        f"| broker CPU per 1000 messages in (each delivered once) | {plain['cpu_per_1000']:.3f} CPU-s "
        f"| {tls['cpu_per_1000']:.3f} CPU-s | {tls['cpu_per_1000'] / plain['cpu_per_1000']:.2f}x |",
        f"| broker resident memory per connected gateway | {plain['rss_per_gateway_kb']:.1f} KB "
        f"| {tls['rss_per_gateway_kb']:.1f} KB | {tls['rss_per_gateway_kb'] - plain['rss_per_gateway_kb']:.1f} KB |",
        f"| all {plain['gateways']:,.0f} gateways connected (and published their births) in "
        f"| {plain['connect_s']:.0f} s | {tls['connect_s']:.0f} s | |",
        "",
        f"So {plain['gateways']:,.0f} gateways reconnecting at once over TLS cost the broker about "
        f"{storm:.1f} CPU-s of handshakes ({t.cpu_ms:.2f} ms each, against {p.cpu_ms:.2f} ms for a plaintext "
        "connection).",
    ])


def main(argv: list[str] | None = None) -> int:
    """Command line: measure, print, optionally record in docs/broker-cluster.md."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gateways", type=int, default=1000)
    p.add_argument("--lamps", type=int, default=32, help="lamps per gateway")
    p.add_argument("--seconds", type=float, default=60.0, help="measuring window")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between two messages of a gateway")
    p.add_argument("--tls", action="store_true", help="also run over TLS and measure what TLS adds")
    p.add_argument("--handshakes", type=int, default=500, help="connections per mode for the handshake cost")
    p.add_argument("--write-docs", action="store_true")
    a = p.parse_args(argv)
    command = (f"python -m tools.load_gateways --gateways {a.gateways} --lamps {a.lamps} --seconds {a.seconds:g} "
               f"--interval {a.interval:g}")
    if a.tls:
        with tempfile.TemporaryDirectory(prefix="streetedge-load-tls-") as folder:
            tls = Tls(Path(folder))
            sample = traffic(0, a.lamps, random.Random(1))
            wire = wire_costs(tls, sample, a.handshakes)
            wire["payload"] = sample.periodic[1]
            plain = asyncio.run(measure(a.gateways, a.lamps, a.seconds, a.interval))
            secure = asyncio.run(measure(a.gateways, a.lamps, a.seconds, a.interval, tls))
        text = tls_table(plain, secure, wire)
        print(text)
        if a.write_docs:
            record("load gateways tls", "Measured: what TLS costs the broker",
                   f"{command} --tls --handshakes {a.handshakes} --write-docs", text, docs=DOCS)
            print(f"recorded in {DOCS}")
        return 0
    figures = asyncio.run(measure(a.gateways, a.lamps, a.seconds, a.interval))
    text = table(figures)
    print(text)
    if a.write_docs:
        record("load gateways", "Measured: what a gateway costs the broker", command + " --write-docs", text,
               docs=DOCS)
        print(f"recorded in {DOCS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
