"""``streetedge bench bus``: how much of an RS-485 line the gateway's polls turn into useful readings.

    streetedge bench bus --nodes 32 --baud 19200 --seconds 60 --write-docs
    streetedge bench bus --nodes 247 --baud 115200 --seconds 60

A paced virtual bus (bytes at the line rate, 11-bit characters as 8E1; the
gateway opens its pty as 8N2, the same 11 bits, since a pty takes no parity)
with ``--nodes`` lamps of the real firmware in lamp hosts of at most
:data:`LAMPS_PER_HOST` lamps each (:mod:`tools.sim.hosted_street`; each host wired to the
bus process by a socket, or by a pty with ``--link pty``), and the gateway's own poller
(:class:`gateway.polling.poller.BusPoller` on :class:`gateway.transport.modbus_rtu.ModbusBus`)
polling every lamp as fast as the line allows (a poll interval far below what
the bus can serve, so the line is never idle by choice). No broker: the figure
is the bus's, the uplink is measured by ``bench spine`` and ``bench delivery``.

What is counted, after every lamp has been polled once (the first poll of a
lamp reads everything, its birth):

- useful readings: register values read from a lamp (measurements at every
  poll, counters every 10th, settings when the lamp says they changed, and any
  register a request carried whole in a bridged gap); values repeated from the
  gateway's memory are not counted;
- the line-rate limit for those readings: the wire time the requests that
  carried them need at the line's bit rate (request and answer characters, the
  t3.5 silence after each frame, no gaps, no turnaround), computed by
  :class:`gateway.polling.poll_plan.LineCost` for every poll made; readings per
  second at the limit = readings / that time. The ratio measured / limit is the
  share of the line's time that carried the readings;
- how often the settings words were read (polls that read them), and the poll
  interval the bus sustained (the mean time between two polls of one lamp);
- for comparison, computed (not measured): the wire time of the old poll that
  read both tables whole, and the interval it would allow.

The machine's load average is printed before and after: the host, the bus and
the gateway share two CPUs with whatever else runs. What runs at which priority,
and why (run as root; the report says when the kernel refused):

- the bus process: ``SCHED_FIFO`` priority 20 (:class:`HostedStreet`), nice -10
  (:data:`SIM_NICE`): it stands for a wire, which waits for nobody;
- the lamp hosts: ``SCHED_FIFO`` priority 10, nice -10: they stand for lamps with
  a CPU each (``--lamp-hosts ordinary``: ordinary scheduling at nice 0);
- the gateway's poller (this process): an ordinary process at nice -10, as a
  cabinet's daemon would run, so that what it costs is what is measured
  (``--gateway-fifo N``: ``SCHED_FIFO`` at priority N, for A/B runs).

Real-time lamp hosts keep both CPUs from every ordinary process while they
work, the kernel worker thread that moves the answer's bytes through the
gateway's pty included; so the harness keeps the work that a real line spreads
over 247 CPUs, and the shared machine must do on two, off the line's path:

- each lamp samples every :data:`SAMPLE_MS` (30 s; ``--sample-ms``) instead of the
  firmware's 1 s (the street's 5 s): a sample costs the host about 2 ms, which a
  real lamp spends on its own CPU. The polls read the same registers either way;
  values are up to 30 s old;
- a lamp's answer reaches the gateway's drop only (``tools.sim.bus
  --answers-to-master``; ``--answers-to all`` as before): every host used to wake
  to frame and ignore every other lamp's answer, four real-time processes
  running at the moment the answer travels to the gateway. Requests and
  broadcasts reach every lamp, as on a real line;
- each host's socket carries line times (``tools.sim.bus --line-times``;
  ``--no-line-times`` as before): a lamp counts its t3.5 from the request's end
  on the line and its answer starts on the line when the lamp wrote it, as a
  lamp's UART tells its own CPU, where a host otherwise started both from the
  moment the machine woke a process (0.5 ms later than t3.5 at the median with
  247 lamps, 6 % of the line's time; 0.05 ms with line times).

The line carries the same frames at the same pace with the same t3.5 either way.
The report also splits the gateway's lateness into the answer's way from the bus
to the gateway's event loop, the gateway's own time beyond t3.5, and the
request's way back (:mod:`tools.bench.bus_trace`).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.polling.poll_plan import COUNTER, EVERYTHING, MEASURE, SETTING, LineCost, plan_for, poll_classes
from gateway.polling.poller import NODE_TURNAROUND, BusPoller
from gateway.service.config import NodeConfig, parse_config
from gateway.service.stats import NodeStats
from gateway.transport.modbus_rtu import ModbusBus
from tools.bench import record
from tools.bench.bus_trace import idle_line, idle_time
from tools.bench.commands import host_line
from tools.sim.bus import BITS_PER_CHAR
from tools.sim.hosted_street import HostedStreet

SIM_NICE = -10
"""Nice value of the bus, the lamp hosts and the poller (as root): see the module docstring."""
LAMPS_PER_HOST = 62
"""Lamps per lamp host: one event loop serving 247 lamps keeps requests waiting behind other lamps' samplers
(a real line has a CPU per lamp), which the line's figure would count against the gateway."""
SAMPLE_MS = 30_000
"""How often each hosted lamp samples in this bench (its sampler's period; see the module docstring)."""
POLL_INTERVAL = 0.01
"""Seconds between polls of a lamp asked of the poller: far below what a bus can serve, so it polls flat out."""


class _Tally:
    """What the polls carried: readings read fresh, the wire time they needed, settings reads."""

    def __init__(self) -> None:
        self.readings = 0
        self.polls = 0
        self.wire = 0.0
        self.settings_polls = 0
        self.counter_polls = 0


def _config(device: str, baud: int, nodes: list[dict[str, object]]) -> str:
    lines = [
        'site = "bench"', 'gateway = "bench-bus"', "[broker]", 'url = "mqtt://127.0.0.1:1"',
        "[[bus]]", 'name = "bus0"', f'device = "{device}"', f"baud = {baud}", 'parity = "N"', "stopbits = 2",
        "timeout = 0.5", "retries = 1",
    ]
    for n in nodes:
        lines += ["[[node]]", f'id = "{n["id"]}"', 'bus = "bus0"', f"unit = {n['unit']}",
                  f"interval = {POLL_INTERVAL}"]
    return "\n".join(lines)


async def _measure(poller: BusPoller, seconds: float, cost: LineCost) -> tuple[_Tally, float, float, int]:
    """Poll flat out; count from the moment every lamp has been polled once, for ``seconds``."""
    tally = _Tally()
    counting = False
    regmap = load_role("lamp")
    original = poller.poll

    async def poll(node: NodeConfig, *, priority: int = 10, hand_on_later: bool = False) -> bool:
        memory = poller.memory.get(node.id)
        classes = memory.due() if memory is not None else EVERYTHING
        mirrored = memory is not None and memory.mirrors
        ok = await original(node, priority=priority, hand_on_later=hand_on_later)
        if ok and counting:
            plan = plan_for(regmap, classes, poller.cost, use_mirrors=mirrored)  # the requests the poller sent
            tally.readings += len(plan.registers)
            tally.polls += 1
            tally.wire += cost.seconds(plan.requests)
            tally.settings_polls += SETTING in classes
            tally.counter_polls += COUNTER in classes
        return ok

    poller.poll = poll  # type: ignore[method-assign]
    task = asyncio.create_task(poller.run())
    try:
        while any(s.polls == 0 for s in poller.stats.values()):
            await asyncio.sleep(0.2)
            if task.done():
                task.result()
        counting = True
        began = time.monotonic()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - began
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    failures = sum(s.failures for s in poller.stats.values())
    return tally, began, elapsed, failures


@dataclass
class BusFigures:
    """One run of the bench: what was counted (see the module docstring) and the conditions."""

    nodes: int
    baud: int
    tally: _Tally
    elapsed: float
    failures: int
    started: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    counters: dict[str, object]
    host: list[dict[str, Any]]
    idle: dict[str, float]
    nice: int = 0
    scheduling: str = "ordinary scheduling"
    """How the bus and the lamp hosts were scheduled (:attr:`HostedStreet.scheduling`)."""
    steal: float | None = None
    """Share of the CPUs' time a hypervisor gave to other machines during the run (``/proc/stat``), if known."""
    link: str = "pty"
    """How the lamp hosts were wired to the bus process (:class:`HostedStreet`)."""
    sample_ms: int = SAMPLE_MS
    """How often each lamp sampled (its sampler's period in the lamp host)."""
    gateway_fifo: int = 0
    """The poller's ``SCHED_FIFO`` priority while measuring; 0: ordinary scheduling."""
    answers_to_master: bool = False
    """Whether the lamps' answers reached the master only (``tools.sim.bus --answers-to-master``)."""
    line_times: bool = False
    """Whether the lamp hosts' socket links carried line times (``tools.sim.bus --line-times``)."""

    @property
    def rate(self) -> float:
        """Useful readings delivered per second."""
        return self.tally.readings / self.elapsed

    @property
    def limit(self) -> float:
        """Readings per second the line could carry with the same requests, at its bit rate."""
        return self.tally.readings / self.tally.wire if self.tally.wire else 0.0


def measure_bus(*, nodes: int = 32, baud: int = 19200, seconds: float = 60.0, realtime: bool = True,
                link: str = "socket", hosts: int | None = None, realtime_hosts: bool = True,
                host_nice: int | None = None, gateway_fifo: int = 0, sample_ms: int = SAMPLE_MS,
                answers_to_master: bool = True, line_times: bool = True) -> BusFigures:
    """Start the street, poll flat out for ``seconds`` (after every lamp's first poll), stop; the figures.

    ``realtime``: the bus and the lamp hosts under ``SCHED_FIFO`` where allowed (see the module docstring);
    a test sharing the machine with other tests leaves it off. ``link``: how the lamp hosts are wired to the
    bus process (:class:`HostedStreet`), a socket or a pty each; the gateway's side is a pty either way.
    ``hosts`` (default: :data:`LAMPS_PER_HOST` lamps each at most), ``realtime_hosts`` and ``host_nice``
    (:class:`HostedStreet`), ``gateway_fifo`` (the poller's ``SCHED_FIFO`` priority, 0: none), ``sample_ms``
    and ``answers_to_master``: the harness (see the module docstring).
    """
    load_before = os.getloadavg()
    cpu_before = _cpu_times()
    ram = Path("/dev/shm")
    with tempfile.TemporaryDirectory(prefix="bench-bus-", dir=ram if ram.is_dir() else None) as flash:
        nice = SIM_NICE if os.geteuid() == 0 else 0
        hosts = hosts or -(-nodes // LAMPS_PER_HOST)
        street = HostedStreet(Path(flash) / "street", nodes=nodes, baud=baud, paced=True, nice=nice, hosts=hosts,
                              realtime=realtime, link=link, realtime_hosts=realtime_hosts, host_nice=host_nice,
                              sample_ms=sample_ms, line_times=line_times)
        trace = Path(flash) / "bus.trace.jsonl"
        street.bus_args = ["--trace", str(trace)] + (["--answers-to-master"] if answers_to_master else [])
        with street:
            began = time.monotonic()
            manifest = street.start(timeout=max(120.0, nodes * 2.0))
            started = time.monotonic() - began
            config = parse_config(_config(manifest["buses"][0]["device"], baud, manifest["nodes"]),
                                  source="bench-bus.toml")
            bus = ModbusBus(config.bus[0])
            stamps: list[tuple[float, float]] = []  # the gateway's (answer heard, next frame written)
            bus.wire.on_write = lambda heard, written: stamps.append((heard, written))
            stats: dict[str, NodeStats] = {}
            poller = BusPoller(bus, config.nodes_on("bus0"), stats, lambda *_: None)
            cost = LineCost(baud, bits=BITS_PER_CHAR)
            own = os.getpriority(os.PRIO_PROCESS, 0)
            if nice:  # the poller too: a cabinet's gateway does not share its CPU with unrelated work
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            if gateway_fifo:
                os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(gateway_fifo))
            try:
                tally, window, elapsed, failures = asyncio.run(_measure(poller, seconds, cost))
            finally:
                bus.close()
                if gateway_fifo:
                    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
                if nice:
                    os.setpriority(os.PRIO_PROCESS, 0, own)
            time.sleep(2.5)  # the bus and the host write their counters every 1-2 s
            counters = street.bus_stats()
            host = [street.host_stats(i) for i in range(hosts)]
        idle = idle_time(trace, baud, window, window + elapsed, stamps)
    cpu_after = _cpu_times()
    steal = None
    if cpu_before and cpu_after and cpu_after[1] > cpu_before[1]:
        steal = (cpu_after[0] - cpu_before[0]) / (cpu_after[1] - cpu_before[1])
    return BusFigures(nodes, baud, tally, elapsed, failures, started, load_before, os.getloadavg(), counters, host,
                      idle, nice, street.scheduling, steal, link, sample_ms, gateway_fifo,
                      answers_to_master, street.line_times)


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs from ``/proc/stat``: on a virtual machine a quiet load average can
    hide a host that gives the CPUs to other machines, which a timing bench must report."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def run_bus_bench(*, nodes: int = 32, baud: int = 19200, seconds: float = 60.0, write_docs: bool = False,
                  link: str = "socket", hosts: int | None = None, lamp_hosts: str = "realtime",
                  sample_ms: int | None = None, gateway_fifo: int = 0, answers_to: str = "master",
                  line_times: bool = True) -> int:
    """Run the bench, print the figures (and record them in docs/performance.md); returns the exit code.

    ``hosts``, ``lamp_hosts`` (``"realtime"`` or ``"ordinary"``), ``sample_ms``, ``gateway_fifo`` and
    ``answers_to`` (``"master"`` or ``"all"``) change the harness for A/B runs (see the module docstring);
    the defaults are what the recorded figures use.
    """
    sample_ms = sample_ms or SAMPLE_MS
    figures = measure_bus(nodes=nodes, baud=baud, seconds=seconds, link=link, hosts=hosts,
                          realtime_hosts=lamp_hosts == "realtime", host_nice=None if lamp_hosts == "realtime" else 0,
                          sample_ms=sample_ms, gateway_fifo=gateway_fifo, answers_to_master=answers_to == "master",
                          line_times=line_times)
    text = _report(figures)
    print(text)
    if write_docs:
        options = [f"--link {link}" if link != "socket" else "", f"--hosts {hosts}" if hosts else "",
                   f"--lamp-hosts {lamp_hosts}" if lamp_hosts != "realtime" else "",
                   f"--sample-ms {sample_ms}" if sample_ms != SAMPLE_MS else "",
                   f"--gateway-fifo {gateway_fifo}" if gateway_fifo else "",
                   f"--answers-to {answers_to}" if answers_to != "master" else "",
                   "" if line_times else "--no-line-times"]
        record(f"bench-bus-{nodes}-{baud}", f"RS-485 bus: {nodes} lamps at {baud} bit/s",
               " ".join([f"streetedge bench bus --nodes {nodes} --baud {baud} --seconds {seconds:g}",
                         *filter(None, options)]), text)
    return 0 if figures.tally.polls else 1


def _hosts(n: int, link: str) -> str:
    wired = "a socket" if link == "socket" else "a pty"
    if n == 1:
        return f"one lamp host, wired to the bus process by {wired}"
    return f"{n} lamp hosts of at most {LAMPS_PER_HOST} lamps, each on its own drop, wired by {wired}"


def _report(f: BusFigures) -> str:
    nodes, baud, tally, elapsed = f.nodes, f.baud, f.tally, f.elapsed
    failures, started, load_before, load_after = f.failures, f.started, f.load_before, f.load_after
    cost = LineCost(baud, bits=BITS_PER_CHAR)
    regmap = load_role("lamp")
    rate, limit = f.rate, f.limit
    measure = plan_for(regmap, frozenset({MEASURE}), LineCost(baud, bits=BITS_PER_CHAR, turnaround=NODE_TURNAROUND),
                       use_mirrors=True)
    whole = [(t, start, count) for t in (HOLDING, INPUT) for start, count in regmap.blocks(t)]
    interval = elapsed * nodes / tally.polls if tally.polls else float("inf")
    n_measure = sum(1 for c in poll_classes(regmap).values() if c == MEASURE)
    old_interval = nodes * cost.seconds(whole)
    lines = [
        f"{nodes} lamps (real firmware, {_hosts(len(f.host), f.link)}) on a paced virtual bus at {baud} bit/s "
        f"({BITS_PER_CHAR}-bit characters; a frame reaches its receivers whole at the end of its last "
        f"character's slot, as a UART's idle interrupt hands it on), the gateway's poller polling flat out for "
        f"{elapsed:.0f} s after "
        f"every lamp's first poll; street started in {started:.0f} s; load average {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after (2 cores)"
        + (f"; {f.steal:.0%} of the CPU time stolen by the hypervisor" if f.steal is not None else "")
        + (f"; the poller at nice {f.nice}" if f.nice else "")
        + (f" and SCHED_FIFO priority {f.gateway_fifo}" if f.gateway_fifo else "")
        + f"; the bus and the lamp hosts (the simulated line and lamps) at {f.scheduling}; each lamp sampling "
        f"every {f.sample_ms / 1000:g} s"
        + ("; the lamps' answers handed to the gateway's drop only" if f.answers_to_master else "")
        + ("; each lamp host told the line's times (a request's end, when its answer started)" if f.line_times
           else "") + ".",
        "",
        "| figure | value |",
        "|---|---|",
        f"| useful readings delivered by the bus | {rate:,.0f} /s ({tally.readings:,} in {tally.polls:,} polls) |",
        f"| line-rate limit for the words those readings need | {limit:,.0f} /s |",
        f"| measured / limit | {rate / limit:.0%} |" if limit else "| measured / limit | - |",
        f"| poll interval sustained per lamp | {interval:.2f} s |",
        f"| polls that read the settings | {tally.settings_polls} of {tally.polls} |",
        f"| polls that read the counters | {tally.counter_polls} of {tally.polls} |",
        f"| failed polls (timeouts, retries exhausted) | {failures} |",
        "",
        f"A routine poll asks for the {n_measure} measurements ({measure.words} words) in "
        f"{len(measure.requests)} request{'s' * (len(measure.requests) > 1)} "
        f"({sum(c for _, _, c in measure.requests)} words with the gaps read "
        f"along, which carry {len(measure.registers) - n_measure} more registers whole: identity and counters, "
        f"decoded too): {cost.seconds(measure.requests) * 1000:.1f} ms of wire time, so a bus of {nodes} lamps "
        f"could poll every {nodes * cost.seconds(measure.requests):.2f} s at the line rate. Computed for "
        f"comparison: the poll that read both tables whole ({sum(c for _, _, c in whole)} words in "
        f"{len(whole)} requests) needs {cost.seconds(whole) * 1000:.1f} ms per lamp, an interval of "
        f"{old_interval:.2f} s for {nodes} lamps.",
        "",
        idle_line(f.idle, elapsed),
        "",
        _bus_line(f.counters),
        "",
        "\n\n".join(host_line(h) if len(f.host) == 1 else f"Host {i + 1}: {host_line(h)}"
                     for i, h in enumerate(f.host)),
    ]
    return "\n".join(lines)


def _bus_line(bus: dict[str, object]) -> str:
    drops = bus.get("drops", {})
    overflow = sum(int(d.get("overflow", 0)) for d in drops.values()) if isinstance(drops, dict) else 0
    return (f"Bus counters: {bus.get('collisions', '?')} collisions, {overflow} bytes lost to full buffers, "
            f"{bus.get('corrupted', 0)} corrupted, {bus.get('lost', 0)} lost.")
