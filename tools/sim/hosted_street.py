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

``nice`` (e.g. -10; negative needs root) sets the scheduling priority of the
bus and the host once started: they stand for a line and lamps that each have
their own hardware, so on a machine shared with other work they should not be
the ones kept waiting for a CPU.

Every node's ``pid`` in the manifest is the host's. Single nodes cannot be
restarted or killed (:meth:`start_node`, :meth:`kill_node` raise): the host is
for benches of a whole bus, the per-process street for everything else.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from tools.image import build_image
from tools.sim.street import NodeProcess, StreetError, VirtualStreet, micropython_path

HOST_DIR = Path(__file__).resolve().parent / "micropython"
"""Where the lamp host (``lamp_host.py``, MicroPython code) lives; put on the host's MICROPYPATH."""
HOST_READY = b"streetedge lamp host ready"


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
    ) -> None:
        super().__init__(workdir, nodes, baud=baud, paced=paced, noise=noise, drop=drop,
                         first_unit=first_unit, heapsize=heapsize, seed=seed)
        self.sample_ms = sample_ms
        self.nice = nice
        self.host_log = self.workdir / "host.log"
        self.host: subprocess.Popen[bytes] | None = None
        self._host_log: IO[bytes] | None = None
        self._host_offset = 0

    def drop_count(self) -> int:
        """One drop: the host's."""
        return 1

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Build the lamp image, start the bus and the host, wait until every lamp listens; the manifest."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            self.image_manifest = self.image_manifests["lamp"] = build_image("sim", "lamp", self.image)
            self._start_bus(timeout)
            self._start_host(timeout)
            if self.nice:
                for proc in (self._bus, self.host):
                    if proc is not None:
                        os.setpriority(os.PRIO_PROCESS, proc.pid, self.nice)
        except BaseException:
            self.stop()
            raise
        manifest = self.manifest()
        (self.workdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    def _start_host(self, timeout: float) -> None:
        lamps = []
        for node in self.nodes.values():
            node.flash.mkdir(parents=True, exist_ok=True)
            config = node.flash / "config.json"
            if not config.exists():
                config.write_text(json.dumps({"unit": node.unit, "role": node.role, "baud": self.baud,
                                              "sample_ms": self.sample_ms}))
            wiring = {"uart": self.ports["drops"][0], "baud": self.baud, "seed": self.seed * 1000 + node.unit}
            (node.flash / "sim.json").write_text(json.dumps(wiring))
            lamps.append({"unit": node.unit, "flash": str(node.flash)})
        host_cfg = self.workdir / "host.json"
        host_cfg.write_text(json.dumps({"uart": self.ports["drops"][0], "baud": self.baud, "lamps": lamps,
                                        "stats": str(self.workdir / "host.stats.json")}))
        self._host_log = self.host_log.open("ab")
        self._host_offset = self.host_log.stat().st_size
        env = dict(os.environ)
        env["MICROPYPATH"] = f"{self.image}:.frozen:{HOST_DIR}"
        self.host = subprocess.Popen(
            [micropython_path(), "-X", f"heapsize={self.heapsize}", "-c",
             f"import lamp_host as h; h.main({str(host_cfg)!r})"],
            cwd=self.workdir, env=env, stdin=subprocess.DEVNULL,
            stdout=self._host_log, stderr=subprocess.STDOUT,
        )
        self._procs.append(self.host)
        for node in self.nodes.values():
            node.proc = self.host  # the manifest's pid, alive(): the host's
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 30.0, units: list[int] | None = None) -> None:
        """Wait until the host says every lamp listens; raise if it died."""
        deadline = time.monotonic() + timeout
        while True:
            with self.host_log.open("rb") as f:
                f.seek(self._host_offset)
                if HOST_READY in f.read():
                    return
            if self.host is None or self.host.poll() is not None:
                raise StreetError(f"the lamp host exited before it was ready:\n{self.host_log_tail()}")
            if time.monotonic() > deadline:
                raise StreetError(f"the lamp host was not ready after {timeout} s:\n{self.host_log_tail()}")
            time.sleep(0.05)

    def host_log_tail(self, lines: int = 20) -> str:
        """The last lines of host.log (for error messages)."""
        try:
            return "\n".join(self.host_log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def host_stats(self) -> dict[str, Any]:
        """The host's counters (written every 2 s; see ``tools/sim/micropython/lamp_host.py``), or {}."""
        try:
            stats: dict[str, Any] = json.loads((self.workdir / "host.stats.json").read_text())
        except (OSError, ValueError):
            return {}
        return stats

    def stop(self) -> None:
        """Stop the host, then the bus."""
        for node in self.nodes.values():
            node.proc = None
        self._stop_proc(self.host, 15)
        self.host = None
        if self._host_log is not None:
            self._host_log.close()
            self._host_log = None
        super().stop()

    def start_node(self, unit: int, *, wait: bool = True, timeout: float = 30.0,
                   hardware: dict[str, Any] | None = None) -> NodeProcess:
        """Not available: the lamps share one process."""
        raise StreetError("a hosted street cannot start one lamp: its lamps share the host process")

    def kill_node(self, unit: int) -> None:
        """Not available: the lamps share one process."""
        raise StreetError("a hosted street cannot kill one lamp: its lamps share the host process")
