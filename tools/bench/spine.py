"""``streetedge bench spine``: the gateway's cost per reading against the bare floor.

One run, same machine, same virtual street (unpaced, so the nodes answer as fast
as they can), same broker:

1. the floor: :mod:`tools.bench.floor` (pymodbus read + cbor2 + aiomqtt QoS 1, nothing else);
2. the gateway: ``streetedge run`` polling every node as fast as its 0.01 s minimum interval allows, once
   with each data profile (``compact``, the default, batched every second; ``senml``, a pack per poll).

Each runs as its own process. Its CPU time (user + system, from /proc) and the
readings an independent subscriber received are both taken over the same
steady-state window (after a warm-up), so imports and connection set-up are
left out. Figures: readings/s delivered, CPU-seconds per 1000 readings, and the
ratio gateway/floor.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from protocols.roles import load
from tools.bench import record
from tools.bench.load import scrape
from tools.broker import LocalBroker, free_port
from tools.mqtt_watch import DataCount, MqttWatch, Seen
from tools.sim.street import VirtualStreet
from tools.street_config import write_gateway_toml

DOCS = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
WARMUP = 3.0
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Figure:
    """What one contender achieved in the measuring window."""

    name: str
    readings: int
    seconds: float
    cpu: float
    polled: float = 0.0
    """Readings read from the nodes in the window (the gateway's own count; the floor publishes each one)."""

    @property
    def rate(self) -> float:
        """Readings per second delivered to the broker."""
        return self.readings / self.seconds

    @property
    def cpu_per_1000(self) -> float:
        """CPU-seconds per 1000 readings delivered."""
        return 1000 * self.cpu / self.readings if self.readings else float("inf")

    @property
    def cpu_per_1000_polled(self) -> float:
        """CPU-seconds per 1000 readings read from the nodes."""
        return 1000 * self.cpu / self.polled if self.polled else float("inf")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


class _Counter:
    """Thread-safe count of readings seen by the floor's subscriber (a fixed number per message)."""

    def __init__(self, per_message: int) -> None:
        self.per_message = per_message
        self.readings = 0
        self._lock = threading.Lock()

    def __call__(self, seen: Seen) -> None:
        with self._lock:
            self.readings += self.per_message

    def value(self) -> int:
        with self._lock:
            return self.readings


def _polled(port: int) -> float:
    """Readings the gateway has read from its nodes so far (its /metrics)."""
    return scrape(port).get("streetedge_readings_polled_total", 0.0)


def _measure(name: str, cmd: list[str], counter: _Counter | DataCount, seconds: float, log: Path,
             polled: Callable[[], float] | None = None) -> Figure:
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while counter.value() == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} delivered nothing; its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        time.sleep(WARMUP)
        p0 = polled() if polled is not None else 0.0
        r0, c0, t0 = counter.value(), _cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        r1, c1, t1 = counter.value(), _cpu_seconds(proc.pid), time.monotonic()
        p1 = polled() if polled is not None else float(r1 - r0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return Figure(name, r1 - r0, t1 - t0, c1 - c0, p1 - p0)


def measure_spine(nodes: int = 8, seconds: float = 20.0,
                  profiles: tuple[str, ...] = ("compact", "senml")) -> tuple[Figure, list[Figure]]:
    """Run the floor, then the gateway with each data profile, against one virtual street; return the figures."""
    registers = len(load("lamp").registers)
    gateways = []
    with tempfile.TemporaryDirectory(prefix="streetedge-bench-") as tmp, LocalBroker() as broker:
        work = Path(tmp)
        with VirtualStreet(work / "street", nodes=nodes) as street:
            manifest = street.start()
            bus = manifest["buses"][0]
            units = ",".join(str(n["unit"]) for n in manifest["nodes"])

            floor_count = _Counter(registers)
            with MqttWatch(broker.host, broker.port, "floor/#", keep=False, on_message=floor_count):
                floor = _measure("floor", [
                    sys.executable, "-m", "tools.bench.floor", "--device", bus["device"], "--baud",
                    str(bus["baud"]), "--units", units, "--port", str(broker.port),
                    "--protocol", broker.protocol, "--seconds", str(seconds + WARMUP + 30),
                ], floor_count, seconds, work / "floor.log")

            for profile in profiles:
                config = write_gateway_toml(
                    work / f"gateway-{profile}.toml", manifest, broker_url=broker.url, protocol=broker.protocol,
                    site="bench", gateway=f"gw-{profile}", interval=0.01,
                )
                # compact batches every second, so that the window counts whole batches
                port = free_port()
                config.write_text(config.read_text() + f'\n[delivery]\nprofile = "{profile}"\nbatch_interval = 1.0\n'
                                  f"[http]\nport = {port}\n")
                root = f"streetedge/v1/bench/gw-{profile}"
                count = DataCount(root)
                with MqttWatch(broker.host, broker.port, root + "/#", keep=False, on_message=count):
                    run = [sys.executable, "-m", "tools.cli", "run", "-c", str(config)]
                    gateways.append(_measure(
                        f"streetedge gateway ({profile})", run, count, seconds, work / f"gateway-{profile}.log",
                        polled=functools.partial(_polled, port),
                    ))
    return floor, gateways


def _table(nodes: int, seconds: float, floor: Figure, gateways: list[Figure], loadavg: tuple[float, float]) -> str:
    return "\n".join([
        f"Virtual street of {nodes} lamp nodes (unpaced), Mosquitto, {seconds:.0f} s window after "
        f"{WARMUP:.0f} s warm-up; {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores shared with other work "
        f"(1-minute load average {loadavg[0]:.1f} at the start, {loadavg[1]:.1f} at the end).",
        "",
        "| contender | readings/s polled | readings/s delivered | CPU-s per 1000 readings delivered | "
        "CPU ratio to floor | CPU-s per 1000 readings polled | ratio to floor |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| bare floor (pymodbus + cbor2 + aiomqtt) | {floor.polled / floor.seconds:,.0f} | {floor.rate:,.0f} | "
        f"{floor.cpu_per_1000:.3f} | 1.00 | {floor.cpu_per_1000_polled:.3f} | 1.00 |",
        *(f"| {g.name} | {g.polled / g.seconds:,.0f} | {g.rate:,.0f} | {g.cpu_per_1000:.3f} | "
          f"{g.cpu_per_1000 / floor.cpu_per_1000:.2f} | {g.cpu_per_1000_polled:.3f} | "
          f"{g.cpu_per_1000_polled / floor.cpu_per_1000_polled:.2f} |" for g in gateways),
        "",
        "Readings delivered are counted by an independent subscriber (SenML packs record by record, compact "
        "messages decoded against their birth); readings polled by the gateway's /metrics. The floor publishes "
        "every poll; the gateway stores a lamp's sample once (a poll repeating the last `seq` is a duplicate), "
        "and the virtual lamps sample once a second.",
    ])


def run_spine_bench(nodes: int = 8, seconds: float = 20.0, write_docs: bool = False) -> int:
    """Measure, print the table, and with ``write_docs`` record it in docs/performance.md."""
    start = os.getloadavg()[0]
    floor, gateways = measure_spine(nodes, seconds)
    table = _table(nodes, seconds, floor, gateways, (start, os.getloadavg()[0]))
    print(table)
    print(json.dumps({"floor": vars(floor), "gateways": [vars(g) for g in gateways]}))
    if write_docs:
        _record(table, nodes, seconds)
        print(f"recorded in {DOCS}")
    return 0


def _record(table: str, nodes: int, seconds: float) -> None:
    command = f"streetedge bench spine --nodes {nodes} --seconds {seconds:g} --write-docs"
    record("bench spine", "Spine: gateway cost per reading", command, table, DOCS)
