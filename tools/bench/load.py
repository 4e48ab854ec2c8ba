"""``streetedge bench load``: the gateway on Modbus TCP lamp simulators, against the bare floor.

Three figures, each from real processes on this machine (simulators, Mosquitto,
the contender; the floor's readings are counted by a paho subscriber, the
gateway's are those in messages the broker acknowledged, from its /metrics):

- **throughput**: every node asks to be polled every 10 ms, far more than the
  machine can serve, so each contender runs flat out. Readings/s delivered and
  CPU-seconds per 1000 readings (user + system of the contender's process from
  /proc, over the same window after a warm-up), for the floor
  (:mod:`tools.bench.floor_tcp`: pymodbus + cbor2 + aiomqtt, same simulators,
  same concurrency) and for ``streetedge run`` with each data profile (``compact``,
  the default: a second of polls per message; ``senml``: one pack per poll).
- **overload**: the same overload held for longer, sampled every few seconds:
  readings/s, resident memory, queue depth and polls skipped (from the
  gateway's own ``/metrics``). A plateau with bounded memory is the aim.
- **memory**: 250 nodes at a 1 s interval, each profile; resident memory after warm-up.

A "reading" is one register value (a lamp poll carries one per register of the
lamp map). Results go to docs/performance.md with ``--write-docs``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cbor2
from prometheus_client.parser import text_string_to_metric_families

from protocols.roles import load
from tools.bench import cpu_seconds, record
from tools.broker import LocalBroker, free_port
from tools.mqtt_watch import MqttWatch, Seen

WARMUP = 5.0
REFERENCE_SATURATION = 12_000
"""Readings/s at which the reference Python IoT gateway saturates on this kind of machine (docs/FACTS)."""


@dataclass
class Run:
    """What one contender did in its window."""

    name: str
    readings: int = 0
    seconds: float = 0.0
    cpu: float = 0.0
    rss_mb: float = 0.0
    samples: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Readings per second delivered."""
        return self.readings / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1000(self) -> float:
        """CPU-seconds per 1000 readings delivered."""
        return 1000 * self.cpu / self.readings if self.readings else float("inf")


class _Count:
    """Readings seen by the subscriber (thread-safe): records per SenML pack, a fixed number for the floor."""

    def __init__(self, per_message: int | None) -> None:
        self.per_message = per_message
        self.value = 0
        self._lock = threading.Lock()

    def __call__(self, seen: Seen) -> None:
        n = self.per_message if self.per_message is not None else len(cbor2.loads(seen.payload))
        with self._lock:
            self.value += n


def rss_mb(pid: int) -> float:
    """Resident memory of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scrape(port: int) -> dict[str, float]:
    """The gateway's own metrics, summed over labels (``name`` or ``name{reason}``)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name + (f"{{{s.labels['reason']}}}" if "reason" in s.labels else "")
            if not s.labels or "reason" in s.labels:
                out[key] = out.get(key, 0.0) + s.value
    return out


class Simulators:
    """``count`` simulator processes, one Modbus TCP port each, ``units`` lamps per port."""

    def __init__(self, count: int, units: int) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.ports: list[int] = []
        for _ in range(count):
            proc = subprocess.Popen(
                [sys.executable, "-m", "tools.sim.tcp_lamps", "--units", str(units)],
                stdout=subprocess.PIPE, text=True,
            )
            self.procs.append(proc)
            assert proc.stdout is not None
            self.ports += json.loads(proc.stdout.readline())["ports"]
        self.units = units

    def close(self) -> None:
        """Stop every simulator."""
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(10)


def gateway_toml(path: Path, broker: LocalBroker, sims: Simulators, *, interval: float, concurrency: int,
                 nodes: int, http_port: int, profile: str = "compact") -> Path:
    """A configuration with one tcp bus per simulator port and ``nodes`` lamps spread over them.

    ``profile`` is the data profile: ``compact`` (the default; polls gathered for 1 s into one message)
    or ``senml`` (one pack per poll).
    """
    lines = [
        'site = "bench"', 'gateway = "gw"', "[broker]", f'url = "{broker.url}"',
        f'protocol = "{broker.protocol}"', "[http]", f"port = {http_port}", "[logging]", 'level = "warning"',
        "[delivery]", f'profile = "{profile}"', "batch_interval = 1.0",
    ]
    for i, port in enumerate(sims.ports):
        lines += ["[[bus]]", f'name = "tcp{i}"', 'type = "tcp"', 'host = "127.0.0.1"', f"port = {port}",
                  f"concurrency = {concurrency}", "timeout = 2.0", "retries = 1"]
    for n in range(nodes):
        bus = n % len(sims.ports)
        unit = n // len(sims.ports) + 1
        lines += ["[[node]]", f'id = "lamp-{n + 1}"', f'bus = "tcp{bus}"', f"unit = {unit}",
                  f"interval = {interval}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _measure(name: str, cmd: list[str], count: Callable[[], float], seconds: float, log: Path, *,
             http_port: int | None = None, sample_every: float = 0.0) -> Run:
    """Start ``cmd``, wait for data and the warm-up, then measure one window (sampled if asked).

    ``count()`` says how many readings have been delivered so far.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    run = Run(name)
    try:
        deadline = time.monotonic() + 60
        while count() == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} delivered nothing; its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        time.sleep(WARMUP)
        r0, c0, t0 = count(), cpu_seconds(proc.pid), time.monotonic()
        step = sample_every or seconds
        last = (r0, t0)
        while time.monotonic() - t0 < seconds - 1e-3:
            time.sleep(min(step, seconds - (time.monotonic() - t0)))
            now = (count(), time.monotonic())
            sample = {"t": round(now[1] - t0, 1), "rate": (now[0] - last[0]) / (now[1] - last[1]),
                      "rss_mb": rss_mb(proc.pid)}
            if http_port is not None and sample_every:
                m = scrape(http_port)
                sample["queue"] = m.get("streetedge_outbox_depth", 0.0)
                sample["skipped"] = sum(v for k, v in m.items() if k.startswith("streetedge_polls_skipped"))
            run.samples.append(sample)
            last = now
        r1, c1, t1 = count(), cpu_seconds(proc.pid), time.monotonic()
        run.readings, run.cpu, run.seconds = int(r1 - r0), c1 - c0, t1 - t0
        run.rss_mb = rss_mb(proc.pid)
        if http_port is not None:
            run.metrics = scrape(http_port)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return run


def _gateway(work: Path, broker: LocalBroker, sims: Simulators, seconds: float, *, interval: float,
             nodes: int, concurrency: int, profile: str, sample_every: float = 0.0, name: str = "gateway") -> Run:
    """``streetedge run``; readings counted as the gateway counts broker acknowledgements (its /metrics)."""
    http_port = free_port()
    config = gateway_toml(work / f"{name}.toml", broker, sims, interval=interval, concurrency=concurrency,
                          nodes=nodes, http_port=http_port, profile=profile)

    def acked() -> float:
        try:
            return scrape(http_port).get("streetedge_readings_acked_total", 0.0)
        except OSError:  # not listening yet
            return 0.0

    return _measure(f"{name} ({profile})", [sys.executable, "-m", "tools.cli", "run", "-c", str(config)], acked,
                    seconds, work / f"{name}.log", http_port=http_port, sample_every=sample_every)


def _floor(work: Path, broker: LocalBroker, sims: Simulators, seconds: float, connections: int) -> Run:
    count = _Count(len(load("lamp").registers))
    with MqttWatch(broker.host, broker.port, "floor/#", protocol=broker.protocol, keep=False, on_message=count):
        return _measure("floor", [
            sys.executable, "-m", "tools.bench.floor_tcp", "--ports", ",".join(map(str, sims.ports)),
            "--units", str(sims.units), "--connections", str(connections), "--port", str(broker.port),
        ], lambda: count.value, seconds, work / "floor.log")


def run_load_bench(mode: str = "all", seconds: float = 20.0, sims: int = 4, nodes: int = 250,
                   write_docs: bool = False, concurrency: int = 8) -> int:
    """Run the chosen figures, print them, and with ``write_docs`` record them in docs/performance.md."""
    sections: list[str] = []
    result: dict[str, object] = {}
    load_start = os.getloadavg()[0]
    units = -(-nodes // sims)
    with tempfile.TemporaryDirectory(prefix="streetedge-load-") as tmp, LocalBroker() as broker:
        work = Path(tmp)
        simulators = Simulators(sims, units)
        try:
            if mode in ("throughput", "all"):
                floor = _floor(work, broker, simulators, seconds, concurrency)
                gateways = [
                    _gateway(work, broker, simulators, seconds, interval=0.01, nodes=nodes,
                             concurrency=concurrency, profile=profile, name=f"gateway-{profile}")
                    for profile in ("compact", "senml")
                ]
                sections.append(_throughput_table(floor, gateways, seconds, concurrency))
                result["throughput"] = {"floor": vars(floor), "gateways": [vars(g) for g in gateways]}
            if mode in ("overload", "all"):
                over = _gateway(work, broker, simulators, max(seconds * 3, 30.0), interval=0.01, nodes=nodes,
                                concurrency=concurrency, profile="compact", sample_every=5.0, name="overload")
                sections.append(_overload_table(over, nodes))
                result["overload"] = vars(over)
            if mode in ("memory", "all"):
                mems = [_gateway(work, broker, simulators, max(seconds, 10.0), interval=1.0, nodes=nodes,
                                 concurrency=concurrency, profile=profile, sample_every=5.0,
                                 name=f"memory-{profile}")
                        for profile in ("compact", "senml")]
                sections.append(_memory_table(mems, nodes))
                result["memory"] = [vars(m) for m in mems]
        finally:
            simulators.close()
    load_end = os.getloadavg()[0]
    text = "\n\n".join(sections)
    print(text)
    print(json.dumps(result, default=str))
    if write_docs:
        command = f"streetedge bench load --mode {mode} --seconds {seconds:g} --sims {sims} --nodes {nodes}"
        header = _header(sims, nodes, (load_start, load_end))
        record("bench load", "Modbus TCP load: throughput, overload, memory", command, header + text)
    return 0


def _header(sims: int, nodes: int, loadavg: tuple[float, float]) -> str:
    regs = len(load("lamp").registers)
    return (
        f"{nodes} lamp nodes ({regs} registers each, two requests per poll) on {sims} Modbus TCP simulator "
        f"processes (tools/sim/tcp_lamps.py), Mosquitto, the durable outbox (SQLite) in the gateway's data path; "
        f"{time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores shared by all of them and by other work "
        f"(1-minute load average {loadavg[0]:.1f} at the start, {loadavg[1]:.1f} at the end).\n\n"
    )


def _throughput_table(floor: Run, gateways: list[Run], seconds: float, concurrency: int) -> str:
    rows = [
        f"| {g.name} | {g.rate:,.0f} | {g.cpu_per_1000:.4f} | {g.cpu_per_1000 / floor.cpu_per_1000:.2f} | "
        f"{g.rss_mb:.0f} | {g.rate / REFERENCE_SATURATION:.1f}x | "
        f"{g.metrics.get('streetedge_polls_skipped_total{overrun}', 0):,.0f} / "
        f"{g.metrics.get('streetedge_polls_skipped_total{backpressure}', 0):,.0f} |"
        for g in gateways
    ]
    return "\n".join([
        f"### Throughput, every node due every 10 ms ({seconds:.0f} s window after {WARMUP:.0f} s warm-up, "
        f"{concurrency} polls in flight per simulator)",
        "",
        "| contender | readings/s to broker ack | CPU-s per 1000 readings | CPU ratio to floor | RSS MB | "
        f"vs {REFERENCE_SATURATION:,}/s reference | polls skipped overrun / backpressure |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| bare floor (pymodbus + cbor2 + aiomqtt, one message per poll) | {floor.rate:,.0f} | "
        f"{floor.cpu_per_1000:.4f} | 1.00 | {floor.rss_mb:.0f} | {floor.rate / REFERENCE_SATURATION:.1f}x | - |",
        *rows,
        "",
        "The floor's readings are counted by a subscriber; the gateway's are the readings in messages the "
        "broker acknowledged (its `streetedge_readings_acked_total`), each poll having been stored in the "
        "outbox first. `senml`: one SenML pack per poll; `compact`: the polls of one second in one message.",
    ])


def _overload_table(run: Run, nodes: int) -> str:
    rows = [
        f"| {s['t']:.0f} | {s['rate']:,.0f} | {s['rss_mb']:.1f} | {s.get('queue', 0):,.0f} | "
        f"{s.get('skipped', 0):,.0f} |"
        for s in run.samples
    ]
    rates = [s["rate"] for s in run.samples]
    rss = [s["rss_mb"] for s in run.samples]
    return "\n".join([
        f"### Overload held for {run.seconds:.0f} s ({nodes} nodes due every 10 ms, compact profile)",
        "",
        "| t (s) | readings/s | RSS MB | outbox depth | polls skipped (total) |",
        "|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"Readings/s min {min(rates):,.0f}, max {max(rates):,.0f}; RSS {min(rss):.1f} to {max(rss):.1f} MB; "
        f"CPU-s per 1000 readings {run.cpu_per_1000:.4f}; skipped by reason: overrun "
        f"{run.metrics.get('streetedge_polls_skipped_total{overrun}', 0):,.0f}, backpressure "
        f"{run.metrics.get('streetedge_polls_skipped_total{backpressure}', 0):,.0f}.",
    ])


def _memory_table(runs: list[Run], nodes: int) -> str:
    rows = [f"| {r.name} | {r.rss_mb:.1f} | {max(s['rss_mb'] for s in r.samples):.1f} | {r.rate:,.0f} | "
            f"{r.cpu_per_1000:.4f} |" for r in runs]
    return "\n".join([
        f"### Memory with {nodes} nodes polled every second",
        "",
        f"Resident memory of `streetedge run` after {WARMUP:.0f} s warm-up and a {runs[0].seconds:.0f} s window.",
        "",
        "| contender | RSS MB at the end | RSS MB max in the window | readings/s delivered | "
        "CPU-s per 1000 readings |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ])


if __name__ == "__main__":
    sys.exit(run_load_bench())
