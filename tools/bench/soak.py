"""``streetedge bench soak``: does the gateway's resident memory creep under steady load?

A cabinet gateway runs for years, so a few MB a minute is fatal even when no
short test sees it. The soak runs the real daemon (``streetedge run``, its own
process) for ``--minutes`` against:

- ``--nodes`` lamps on Modbus TCP simulator processes (:mod:`tools.sim.tcp_lamps`),
  each polled every second, compact data profile, Mosquitto on loopback;
- one signed ``dim`` command a second to the next lamp in turn (an independent
  aiomqtt client signs it as an operator does), each result checked: ``done``
  with the lamp confirmed;
- one broker restart half way through (Mosquitto stopped, started again on the
  same port): the gateway must reconnect (its ``streetedge_broker_connects_total``
  grows) and carry on.

The gateway's resident memory (``VmRSS`` from /proc) is sampled every
``--every`` seconds; the figure is the least-squares slope in MB per minute over
the samples after ``--warmup`` minutes (caches, pools and the outbox's pages
fill during the warm-up). A slope under 0.05 MB/min over 30 minutes is what a
gateway that does not creep looks like here.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.mqtt.topics import Topics
from tools.bench import record
from tools.bench.load import Simulators, gateway_toml, rss_mb, scrape
from tools.broker import LocalBroker, free_port
from tools.keys import trust
from tools.operator import Signer, build_command

TARGET_SLOPE = 0.05
"""MB per minute under which the resident memory counts as flat."""
DRAIN = 30.0
"""Seconds the operator waits at the end for the results of its last commands."""
RECONNECT_WAIT = 120.0
"""Seconds a run waits at its end for a reconnection after the broker restart that it has not seen yet."""
SITE, GATEWAY = "bench", "gw"  # as written by tools.bench.load.gateway_toml


def slope_per_minute(samples: list[tuple[float, float]]) -> float:
    """Least-squares slope of ``(seconds, MB)`` samples, in MB per minute (0.0 with fewer than two times)."""
    n = len(samples)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in samples)
    return 60.0 * cov / var


@dataclass
class Commands:
    """What the operator side saw: commands sent, and the results that came back, by outcome."""

    sent: int = 0
    unsent: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    pending: dict[str, float] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def done(self) -> int:
        """Results ``done`` with the lamp confirmed."""
        return self.outcomes["done"]


@dataclass
class Soak:
    """One soak run: samples ``(s since the gateway started, RSS MB)`` and what happened around them."""

    minutes: float
    nodes: int
    warmup: float
    samples: list[tuple[float, float]] = field(default_factory=list)
    commands: Commands = field(default_factory=Commands)
    restart_at: float | None = None
    connects_before: float = 0.0
    connects_after: float = 0.0
    readings_acked: float = 0.0
    loadavg: tuple[float, float] = (0.0, 0.0)

    @property
    def measured(self) -> list[tuple[float, float]]:
        """The samples after the warm-up."""
        return [(t, v) for t, v in self.samples if t >= self.warmup * 60]

    @property
    def slope(self) -> float:
        """MB per minute after the warm-up."""
        return slope_per_minute(self.measured)

    @property
    def reconnected(self) -> bool:
        """The gateway connected again after the broker restart."""
        return self.restart_at is not None and self.connects_after > self.connects_before


class _Operator:
    """Sends one signed ``dim`` a second from its own thread and checks every result; rides out broker restarts."""

    def __init__(self, broker: LocalBroker, signer: Signer, nodes: int, tally: Commands) -> None:
        self._broker, self._signer, self._nodes, self._tally = broker, signer, nodes, tally
        self._stop = threading.Event()
        self._quiet = threading.Event()  # no more commands; results still read
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="soak-operator", daemon=True)

    def start(self) -> None:
        """Begin sending."""
        self._thread.start()

    def drain(self, timeout: float = DRAIN) -> None:
        """Send no more, wait (up to ``timeout`` s) for the results still expected, then stop."""
        self._quiet.set()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._tally.lock:
                if not self._tally.pending:
                    break
            time.sleep(0.2)
        self.stop()

    def stop(self) -> None:
        """Stop sending and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    async def _run(self) -> None:
        topics = Topics(SITE, GATEWAY)
        i = 0
        while not self._stop.is_set():
            try:
                async with aiomqtt.Client(self._broker.host, self._broker.port,
                                          protocol=aiomqtt.ProtocolVersion.V5) as client:
                    await client.subscribe(topics.result, qos=1)
                    reader = asyncio.create_task(self._results(client))
                    try:
                        while not self._stop.is_set() and not reader.done():
                            if not self._quiet.is_set():
                                i += 1
                                await self._send(client, topics, i)
                            await asyncio.sleep(1.0)
                    finally:
                        reader.cancel()
            except aiomqtt.MqttError:
                with self._tally.lock:
                    self._tally.unsent += 1
                await asyncio.sleep(1.0)  # the broker is restarting: try again

    async def _send(self, client: aiomqtt.Client, topics: Topics, i: int) -> None:
        target = f"lamp-{i % self._nodes + 1}"
        command = build_command(target, "dim", {"level": 10 + i % 90})
        with self._tally.lock:
            self._tally.pending[command["id"]] = time.monotonic()
        try:
            await client.publish(topics.cmd, self._signer.sign(command), qos=1)
        except aiomqtt.MqttError:
            with self._tally.lock:
                del self._tally.pending[command["id"]]
            raise
        with self._tally.lock:
            self._tally.sent += 1

    async def _results(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            result = cbor2.loads(message.payload)
            if not isinstance(result, dict):
                continue
            with self._tally.lock:
                if self._tally.pending.pop(str(result.get("id")), None) is None:
                    continue  # a result of an earlier run, or a duplicate
                outcome = str(result.get("status"))
                if outcome == "done" and result.get("unconfirmed"):
                    outcome = "done, unconfirmed"
                self._tally.outcomes[outcome] += 1
                if outcome != "done" and len(self._tally.examples) < 3:
                    self._tally.examples.append(result)


def _connects(http_port: int) -> float:
    try:
        return scrape(http_port).get("streetedge_broker_connects_total", 0.0)
    except OSError:
        return 0.0


def run_soak(*, minutes: float, nodes: int, warmup: float, every: float = 10.0, sims: int = 4,
             concurrency: int = 8, restart: bool = True, trace: float = 0.0, work: Path) -> Soak:
    """Run the soak in ``work`` and return what was measured (the daemon's log stays in ``work``).

    ``trace`` > 0 runs the gateway under :mod:`tools.bench.memtrace`, which rewrites
    ``work/growth.txt`` every ``trace`` seconds (the RSS figures then include the tracing's own cost).
    """
    soak = Soak(minutes, nodes, warmup)
    load_start = os.getloadavg()[0]
    signer = Signer(Ed25519PrivateKey.generate(), "soak")
    simulators = Simulators(sims, -(-nodes // sims))
    broker = LocalBroker("mosquitto").start()
    http_port = free_port()
    config = gateway_toml(work / "gateway.toml", broker, simulators, interval=1.0, concurrency=concurrency,
                          nodes=nodes, http_port=http_port, profile="compact")
    trust(config, work, signer.kid, signer.key)
    operator = _Operator(broker, signer, nodes, soak.commands)
    log = (work / "gateway.log").open("wb")
    cmd = [sys.executable, "-m", "tools.cli", "run", "-c", str(config)]
    if trace > 0:
        cmd = [sys.executable, "-m", "tools.bench.memtrace", "--every", str(trace), "--baseline",
               str(warmup * 60), "--out", str(work / "growth.txt"), "--", "-c", str(config)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        began = time.monotonic()
        while _connects(http_port) == 0:  # up and connected: start the operator
            if proc.poll() is not None or time.monotonic() - began > 120:
                raise RuntimeError(f"the gateway did not come up; its log:\n{(work / 'gateway.log').read_text()}")
            time.sleep(0.2)
        operator.start()
        total = minutes * 60
        restart_at = warmup * 60 + (total - warmup * 60) / 2 if restart else None
        next_sample = 0.0
        while (elapsed := time.monotonic() - began) < total:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited ({proc.returncode}); log in {work / 'gateway.log'}")
            if restart_at is not None and soak.restart_at is None and elapsed >= restart_at:
                soak.connects_before = _connects(http_port)
                soak.restart_at = elapsed
                broker.stop()
                time.sleep(5.0)  # the gateway sees the broker gone and retries meanwhile
                broker.start()
            if elapsed >= next_sample:
                soak.samples.append((round(elapsed, 1), rss_mb(proc.pid)))
                next_sample = elapsed + every  # a late start or a stall is not made up with a burst of samples
            time.sleep(min(1.0, max(0.05, next_sample - (time.monotonic() - began))))
        soak.samples.append((round(time.monotonic() - began, 1), rss_mb(proc.pid)))
        operator.drain()
        waited = time.monotonic()
        while soak.restart_at is not None and _connects(http_port) <= soak.connects_before:
            if time.monotonic() - waited > RECONNECT_WAIT or proc.poll() is not None:
                break  # reported as not reconnected
            time.sleep(0.5)
        metrics = scrape(http_port)
        soak.connects_after = metrics.get("streetedge_broker_connects_total", 0.0)
        soak.readings_acked = metrics.get("streetedge_readings_acked_total", 0.0)
    finally:
        operator.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        broker.stop()
        simulators.close()
    soak.loadavg = (load_start, os.getloadavg()[0])
    return soak


def report(soak: Soak) -> str:
    """The figures of one run as Markdown."""
    measured = soak.measured
    c = soak.commands
    lost = len(c.pending)
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(c.outcomes.items())) or "none"
    if soak.restart_at is None:
        restart = "no broker restart"
    elif soak.reconnected:
        restart = (f"broker restarted at {soak.restart_at / 60:.1f} min; the gateway reconnected "
                   f"({soak.connects_before:.0f} connections before, {soak.connects_after:.0f} after)")
    else:
        restart = f"broker restarted at {soak.restart_at / 60:.1f} min; the gateway did NOT reconnect"
    verdict = "flat" if abs(soak.slope) < TARGET_SLOPE else "CREEPING" if soak.slope > 0 else "falling"
    lines = [
        f"{soak.nodes} Modbus TCP lamps polled every second (compact profile), one signed `dim` a second, "
        f"{restart}; {soak.minutes:g} min, RSS sampled every ~{_spacing(soak):.0f} s, slope after "
        f"{soak.warmup:g} min warm-up; {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores shared with other "
        f"work (load average {soak.loadavg[0]:.1f} at the start, {soak.loadavg[1]:.1f} at the end).",
        "",
        "| RSS slope after warm-up | RSS at warm-up end | RSS at the end | RSS min / max after warm-up | "
        "commands sent / done (confirmed) | readings acked |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| **{soak.slope:+.3f} MB/min** ({verdict}) | {measured[0][1] if measured else 0:.1f} MB | "
        f"{soak.samples[-1][1] if soak.samples else 0:.1f} MB | "
        f"{min(v for _, v in measured) if measured else 0:.1f} / {max(v for _, v in measured) if measured else 0:.1f}"
        f" MB | {c.sent:,} / {c.done:,} | {soak.readings_acked:,.0f} |",
        "",
        f"Results by status: {outcomes}; {lost} without a result (sent just before the end or lost with the "
        f"broker), {c.unsent} sends refused while the broker was down.",
        "",
        "RSS (MB) by minute: " + ", ".join(f"{t / 60:.0f}: {v:.1f}" for t, v in _by_minute(soak.samples)),
    ]
    if c.examples:
        lines += ["", "Not done, e.g.: " + "; ".join(str(e)[:200] for e in c.examples[:2])]
    return "\n".join(lines)


def _spacing(soak: Soak) -> float:
    ts = [t for t, _ in soak.samples]
    return (ts[-1] - ts[0]) / (len(ts) - 1) if len(ts) > 1 else 0.0


def _by_minute(samples: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The first sample of each whole minute (a compact trace for the docs)."""
    out: list[tuple[float, float]] = []
    for t, v in samples:
        if not out or int(t // 60) > int(out[-1][0] // 60):
            out.append((t, v))
    return out


def run_soak_bench(*, minutes: float = 30.0, nodes: int = 250, warmup: float = 5.0, every: float = 10.0,
                   label: str = "", write_docs: bool = False, trace: float = 0.0) -> int:
    """Run the soak, print its figures (and record them in docs/performance.md); 1 if the gateway failed.

    ``trace`` > 0: see :func:`run_soak`; the last growth report is printed too, and nothing is recorded.
    """
    # SIGTERM unwinds like an error, so the gateway, the simulators and the broker are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory(prefix="streetedge-soak-") as tmp:
        soak = run_soak(minutes=minutes, nodes=nodes, warmup=warmup, every=every, trace=trace, work=Path(tmp))
        growth = Path(tmp) / "growth.txt"
        if trace > 0:
            print(growth.read_text() if growth.exists() else "no growth report (the run ended before the first)")
    text = report(soak)
    print(text)
    print(json.dumps({"slope_mb_per_min": soak.slope, "samples": soak.samples, "sent": soak.commands.sent,
                      "outcomes": dict(soak.commands.outcomes), "reconnected": soak.reconnected}))
    if write_docs and not trace:
        command = f"streetedge bench soak --minutes {minutes:g} --nodes {nodes} --warmup {warmup:g}"
        command += f" --label {shlex.quote(label)}" if label else ""
        heading = "Soak: resident memory over time" + (f" ({label})" if label else "")
        record(f"bench soak{' ' + label if label else ''}", heading, command, text)
    return 0 if soak.reconnected and soak.commands.done else 1
