"""A virtual street whose lamps share one process and one drop of the bus: whole-bus benches at 247 lamps.

``HostedStreet`` is a :class:`~tools.sim.street.VirtualStreet` of lamps (same
image, same flash folders, same manifest) whose nodes run in ONE MicroPython
process, the lamp host (``tools/sim/micropython/lamp_host.py``: the real ``Node``, lamp
role and ``ModbusSlave`` for every lamp, one framer for the drop; its docstring
says what the model leaves out and what it measures). The bus has one node drop,
so the paced bus makes one delivery per character instead of N, and one
interpreter wakes instead of N. The host's log is ``<workdir>/host.log``, its
counters ``<workdir>/host.stats.json`` (:meth:`HostedStreet.host_stats`).

The lamps sample every ``sample_ms`` (their ``config.json``; 5 s by default
instead of the firmware's 1 s): a lamp's sampling costs the host about 2 ms of
CPU, so 247 lamps sampling every second take half a core of the shared machine
and hold requests up behind other lamps' samples, which a real bus, with a CPU
per lamp, never does. Sampling puts nothing on the bus and a write acts at
once (``on_write``), so the commands' timing does not depend on it; measured
values are up to ``sample_ms`` old. The nodes start staggered over one sample period.

``hosts`` splits the lamps over that many host processes, each on its own drop
(units in order, as even as they go): one interpreter's event loop serves its
lamps one task at a time, so a request that arrives while the host runs another
lamp's sampler waits for it; fewer lamps per host, fewer such waits (a real bus
has a CPU per lamp). The first host logs to ``host.log`` and counts to
``host.stats.json``, the others to ``host-<i>.log`` and ``host-<i>.stats.json``.

``nice`` (e.g. -10; negative needs root) sets the scheduling priority of the
bus and the host once started: they stand for a line and lamps that each have
their own hardware, so on a machine shared with other work they should not be
the ones kept waiting for a CPU. ``realtime`` goes further: the bus and the
hosts run under ``SCHED_FIFO`` (:data:`RT_PRIORITY_BUS`, :data:`RT_PRIORITY`), so a byte's
delivery and a lamp's answer are not queued behind ordinary processes (on a
real line each lamp has its own CPU and the wire has no scheduler). Neither
process spins: both sleep between character slots or in their event loop,
and the kernel keeps 5 % of each second for ordinary processes
(``sched_rt_runtime_us``). Where the kernel refuses (not root, no
``CAP_SYS_NICE``), they keep ``nice`` and :attr:`HostedStreet.scheduling` says so.
``realtime_hosts=False`` puts only the bus under ``SCHED_FIFO`` and leaves the hosts
ordinary processes at ``host_nice`` (default ``nice``): real-time hosts keep the CPUs
from everything of ordinary priority while they work, the kernel worker that moves a
pty's bytes to the gateway included (``streetedge bench bus --lamp-hosts``).

``link`` says how a host is wired to its drop: ``"socket"`` (the default), an
AF_UNIX stream socket the bus listens on (``tools.sim.bus --link socket``), or
``"pty"``, a pseudo-terminal like the per-process street's nodes. The master
(the gateway's side) is a pty either way. Linux hands a pty's bytes on through
a kernel worker thread of ordinary priority, one more process to wait for a CPU
on a busy machine at each hop (bus to host, host to bus) whatever the priority
of the bus and the hosts; a socket's write wakes the reader directly. The bus
paces, hands over and traces frames alike on both links. A socket link carries
line times too (``line_times``, the default; ``tools.sim.bus --line-times``): a
lamp counts its t3.5 from the request's end on the line, and its answer starts
on the line when the lamp wrote it, as with a UART on a lamp's own CPU, not when
the processes between woke up.

Every node's ``pid`` in the manifest is the host's. Single nodes cannot be
restarted or killed (:meth:`start_node`, :meth:`kill_node` raise): the host is
for benches of a whole bus, the per-process street for everything else.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from tools.image import build_image
from tools.sim.bus import LINKS
from tools.sim.street import NodeProcess, StreetError, VirtualStreet, micropython_path

HOST_DIR = Path(__file__).resolve().parent / "micropython"
"""Where the lamp host (``lamp_host.py``, MicroPython code) lives; put on the host's MICROPYPATH."""
HOST_READY = b"streetedge lamp host ready"
RT_PRIORITY = 10
"""``SCHED_FIFO`` priority of the lamp hosts with ``realtime`` (1-99; low: kernel threads stay above)."""
RT_PRIORITY_BUS = 20
"""``SCHED_FIFO`` priority of the bus process with ``realtime``: above the hosts, as a wire waits for nobody (at
equal priority a host's sampler would hold a byte's delivery until it yields, when both share a CPU)."""


class HostedStreet(VirtualStreet):
    """``nodes`` lamps (units ``first_unit``...) in one lamp host on one drop of the bus."""

    def __init__(
        self,
        workdir: Path,
        nodes: int = 8,
        *,
        baud: int = 19200,
        paced: bool = False,
        noise: float = 0.0,
        drop: float = 0.0,
        first_unit: int = 1,
        heapsize: str = "16M",
        seed: int = 0,
        sample_ms: int = 5000,
        nice: int = 0,
        hosts: int = 1,
        realtime: bool = False,
        link: str = "socket",
        realtime_hosts: bool = True,
        host_nice: int | None = None,
        line_times: bool = True,
    ) -> None:
        super().__init__(workdir, nodes, baud=baud, paced=paced, noise=noise, drop=drop,
                         first_unit=first_unit, heapsize=heapsize, seed=seed)
        if not 1 <= hosts <= max(1, nodes):
            raise StreetError(f"{hosts} lamp hosts for {nodes} lamps: 1 to {max(1, nodes)}")
        if link not in LINKS:
            raise StreetError(f"link {link!r}: one of {', '.join(LINKS)}")
        self.link = link
        self.line_times = line_times and link == "socket"
        self.sample_ms = sample_ms
        self.nice = nice
        self.hosts = hosts
        self.realtime = realtime
        self.realtime_hosts = realtime_hosts
        self.host_nice = nice if host_nice is None else host_nice
        self.scheduling = f"nice {nice}" if nice else "ordinary scheduling"
        """How the bus and the hosts were scheduled, for a bench's text (set by :meth:`start`)."""
        self.host_log = self.workdir / "host.log"
        self.host: subprocess.Popen[bytes] | None = None
        """The first lamp host (all of them: :attr:`host_procs`)."""
        self.host_procs: list[subprocess.Popen[bytes]] = []
        self._host_logs: list[IO[bytes]] = []
        self._host_offsets: list[int] = []  # each host log's size when its host started: "ready" after that

    def drop_count(self) -> int:
        """One drop per host."""
        return self.hosts

    def _start_bus(self, timeout: float) -> None:
        extra = self.bus_args  # a bench's own options (e.g. --trace), kept as they are
        self.bus_args = [*extra, "--link", self.link] + (["--line-times"] if self.line_times else [])
        try:
            super()._start_bus(timeout)
        finally:
            self.bus_args = extra

    def _host_file(self, i: int, suffix: str) -> Path:
        return self.workdir / (f"host{suffix}" if i == 0 else f"host-{i}{suffix}")

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Build the lamp image, start the bus and the host, wait until every lamp listens; the manifest."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.image_manifest = self.image_manifests["lamp"] = build_image("sim", "lamp", self.image)
            self._start_bus(timeout)
            self._start_hosts(timeout)
            self._schedule(self._bus.pid if self._bus is not None else None, [p.pid for p in self.host_procs])
        except BaseException:
            self.stop()
            raise
        manifest = self.manifest()
        (self.workdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    def _schedule(self, bus: int | None, hosts: list[int]) -> None:
        """Give the bus and the hosts their priority: ``nice``, then ``SCHED_FIFO`` if asked and allowed."""
        pids = ([bus] if bus is not None else []) + hosts
        for pid in pids:
            nice = self.nice if pid == bus else self.host_nice
            if nice:
                os.setpriority(os.PRIO_PROCESS, pid, nice)
        if self.host_nice != self.nice:
            self.scheduling = f"the bus at nice {self.nice}, the lamp hosts at nice {self.host_nice}"
        if not self.realtime:
            return
        fifo = [bus] if bus is not None else []
        if self.realtime_hosts:
            fifo += hosts
        try:
            for pid in fifo:
                priority = RT_PRIORITY_BUS if pid == bus else RT_PRIORITY
                os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(priority))
        except OSError as exc:  # not root, or a container without CAP_SYS_NICE
            for pid in fifo:
                with contextlib.suppress(OSError):
                    os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
            self.scheduling += f" (real-time scheduling refused: {exc.strerror})"
            return
        if self.realtime_hosts:
            self.scheduling = f"SCHED_FIFO (real time; bus priority {RT_PRIORITY_BUS}, lamp hosts {RT_PRIORITY})"
        else:
            self.scheduling = (f"the bus at SCHED_FIFO (real time, priority {RT_PRIORITY_BUS}), the lamp hosts at "
                               f"ordinary scheduling (nice {self.host_nice})")

    def _start_hosts(self, timeout: float) -> None:
        nodes = list(self.nodes.values())
        for i in range(self.hosts):
            group = nodes[i * len(nodes) // self.hosts:(i + 1) * len(nodes) // self.hosts]
            self._start_host(i, group, self.ports["drops"][i])
        self.wait_ready(timeout)

    def _start_host(self, i: int, group: list[NodeProcess], drop: str) -> None:
        lamps = []
        for node in group:
            node.flash.mkdir(parents=True, exist_ok=True)
            config = node.flash / "config.json"
            if not config.exists():
                config.write_text(json.dumps({"unit": node.unit, "role": node.role, "baud": self.baud,
                                              "sample_ms": self.sample_ms}))
            wiring = {"uart": drop, "baud": self.baud, "seed": self.seed * 1000 + node.unit}
            (node.flash / "sim.json").write_text(json.dumps(wiring))
            lamps.append({"unit": node.unit, "flash": str(node.flash)})
        host_cfg = self._host_file(i, ".json")
        wired = "socket" if self.link == "socket" else "uart"
        host_cfg.write_text(json.dumps({wired: drop, "baud": self.baud, "lamps": lamps, "line_times": self.line_times,
                                        "stats": str(self._host_file(i, ".stats.json"))}))
        log = self._host_file(i, ".log").open("ab")
        self._host_logs.append(log)
        self._host_offsets.append(log.tell())
        env = dict(os.environ)
        env["MICROPYPATH"] = f"{self.image}:.frozen:{HOST_DIR}"
        proc = subprocess.Popen(
            [micropython_path(), "-X", f"heapsize={self.heapsize}", "-c",
             f"import lamp_host as h; h.main({str(host_cfg)!r})"],
            cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
        )
        self._procs.append(proc)
        self.host_procs.append(proc)
        if self.host is None:
            self.host = proc
        for node in group:
            node.proc = proc  # the manifest's pid, alive(): its host's

    def wait_ready(self, timeout: float = 30.0, units: list[int] | None = None) -> None:
        """Wait until every host says its lamps listen; raise if one died."""
        deadline = time.monotonic() + timeout
        pending = set(range(len(self.host_procs)))
        while pending:
            for i in sorted(pending):
                with self._host_file(i, ".log").open("rb") as f:
                    f.seek(self._host_offsets[i])
                    ready = HOST_READY in f.read()
                if ready:
                    pending.discard(i)
                elif self.host_procs[i].poll() is not None:
                    raise StreetError(f"lamp host {i} exited before it was ready:\n{self.host_log_tail(i)}")
            if pending and time.monotonic() > deadline:
                raise StreetError(f"the lamp host was not ready after {timeout} s:\n"
                                  f"{self.host_log_tail(min(pending))}")
            if pending:
                time.sleep(0.05)

    def host_log_tail(self, i: int = 0, lines: int = 20) -> str:
        """The last lines of host ``i``'s log (for error messages)."""
        try:
            return "\n".join(self._host_file(i, ".log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def host_stats(self, i: int = 0) -> dict[str, Any]:
        """Host ``i``'s counters (written every 2 s; see ``tools/sim/micropython/lamp_host.py``), or {}."""
        try:
            stats: dict[str, Any] = json.loads(self._host_file(i, ".stats.json").read_text())
        except (OSError, ValueError):
            return {}
        return stats

    def stop(self) -> None:
        """Stop the host, then the bus."""
        for node in self.nodes.values():
            node.proc = None
        for proc in self.host_procs:
            self._stop_proc(proc, 15)
        self.host_procs = []
        self.host = None
        for log in self._host_logs:
            log.close()
        self._host_logs = []
        self._host_offsets = []
        super().stop()

    def start_node(self, unit: int, *, wait: bool = True, timeout: float = 30.0,
                   hardware: dict[str, Any] | None = None) -> NodeProcess:
        """Not available: the lamps share one process."""
        raise StreetError("a hosted street cannot start one lamp: its lamps share the host process")

    def kill_node(self, unit: int) -> None:
        """Not available: the lamps share one process."""
        raise StreetError("a hosted street cannot kill one lamp: its lamps share the host process")
