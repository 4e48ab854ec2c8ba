"""The virtual street: a virtual RS-485 bus and N real firmware nodes on the MicroPython unix port.

``VirtualStreet`` builds the device image of each role on the street once
(``tools.image``, board ``sim``: ``<workdir>/image`` for the street's default
``role``, ``<workdir>/image-<role>`` for others), starts the bus process
(``tools.sim.bus``) and one node process per unit::

    micropython -X heapsize=<128K + the image's ROMFS bytes> main.py

in the node's own flash folder ``<workdir>/node-<unit>`` (working directory),
where the street puts, as provisioning does, ``main.py``,
``update_boot.py``, ``sim_rom.mpy`` (the board's ROM partitions) and the
role's ROMFS image in code slot 0 (ROM partition 0, ``rom/part0.bin``, made
active in ``rom/state.json``; a node keeps its slots across restarts, so an
update it received stays). ``update_boot`` mounts the
active slot at ``/rom`` (a buffer in the heap, where an ESP32 maps flash:
hence the heap raised by exactly the image's size, and the node counts its
RAM without the buffer). ``rom=False`` runs the image's files instead
(``MICROPYPATH=<image>:.frozen``, ``<image>/main.py``). In the flash folder:

- ``config.json``: the node's configuration (``{"unit", "role", "baud"}``),
  written only if absent: a node keeps its configuration across restarts;
- ``sim.json``: the virtual wiring (``{"uart": <pty>, "baud", "seed"}``),
  rewritten at every start;
- ``node.log``: the node's stdout and stderr, appended;
- what the node writes itself: ``counters.json``, ``world.json`` (the physical
  lamp, water meter or weather), ``diag.json`` (heap, Modbus counters).

A street may mix roles: ``roles={unit: role}`` names the role of some units,
the others have ``role``; e.g. lamps on 1..8, meters on 9..10, an environment
node on 11.

The manifest (returned by :meth:`VirtualStreet.start` and written to
``<workdir>/manifest.json``) tells a gateway or a test where everything is::

    {"buses": [{"name": "bus0", "device": "/dev/pts/N", "baud": 19200, "paced": false}],
     "nodes": [{"id": "lamp-1", "unit": 1, "role": "lamp", "bus": "bus0",
                "flash": "/abs/node-1", "pid": 123}]}

Every process the street starts is stopped by :meth:`stop` (by PID), by the
context manager, and, failing that, when the street object is collected or the
interpreter exits; the bus also exits by itself when its parent dies, and a node
exits when its bus is gone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tools.image import build_image

REPO = Path(__file__).resolve().parents[2]
READY_LINE = b"streetedge node ready"
BUS_NAME = "bus0"


class StreetError(RuntimeError):
    """A part of the virtual street did not start; the message quotes its log."""


def micropython_path() -> str:
    """The MicroPython unix port: next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise StreetError("micropython (unix port) not found: `make setup` installs it into .venv")
    return found


class NodeProcess:
    """One node: its unit, flash folder, and (while running) its process."""

    def __init__(self, unit: int, role: str, flash: Path) -> None:
        self.unit = unit
        self.role = role
        self.id = f"{role}-{unit}"
        self.flash = flash
        self.log = flash / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0  # size of node.log when the current process started
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running process, or None."""
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        """True while the node's process runs."""
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """True once the current process printed its ready line."""
        try:
            with self.log.open("rb") as f:
                f.seek(self.log_offset)
                return READY_LINE in f.read()
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of node.log (for error messages)."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def heap_bytes(size: str) -> int:
    """Bytes of a MicroPython ``-X heapsize`` value (``128K``, ``1M``, ``65536``)."""
    scale = {"K": 1024, "M": 1024 * 1024}.get(size[-1:].upper(), 1)
    return int(size[:-1] if scale > 1 else size) * scale


def install_code(image: Path, flash: Path) -> int:
    """Put an image's flash-root files on a node, and its ROMFS image in slot 0 if it has no slots yet.

    Returns the bytes of the active slot's image (what the node's heap is raised by).
    """
    from tools.sim.code_slots import active_slot_bytes, install_first_slot

    for name in ("main.py", "update_boot.py", "sim_rom.mpy"):
        if (image / name).is_file():
            shutil.copyfile(image / name, flash / name)
    install_first_slot(flash, (image / "rom.img").read_bytes())
    return active_slot_bytes(flash)


def _kill_all(procs: list[subprocess.Popen[bytes]]) -> None:
    # Last-resort cleanup (garbage collection, interpreter exit): no waiting politely.
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


class VirtualStreet:
    """A bus and ``nodes`` nodes (units ``first_unit``...; lamps unless ``role``/``roles`` say otherwise)."""

    def __init__(
        self,
        workdir: Path,
        nodes: int = 8,
        *,
        role: str = "lamp",
        roles: dict[int, str] | None = None,
        baud: int = 19200,
        paced: bool = False,
        noise: float = 0.0,
        drop: float = 0.0,
        first_unit: int = 1,
        heapsize: str = "128K",
        seed: int = 0,
        rom: bool = True,
    ) -> None:
        if first_unit < 1 or first_unit + nodes - 1 > 247:
            raise ValueError("units must lie in 1..247")
        units = range(first_unit, first_unit + nodes)
        stray = sorted(set(roles or {}) - set(units))
        if stray:
            raise ValueError(f"roles name units outside {first_unit}..{first_unit + nodes - 1}: {stray}")
        self.workdir = Path(workdir).resolve()
        self.role = role
        self.baud = baud
        self.paced = paced
        self.noise = noise
        self.drop = drop
        self.heapsize = heapsize
        self.seed = seed
        self.rom = rom
        self.image = self.workdir / "image"  # the default role's image
        self.image_manifest: dict[str, Any] = {}
        self.nodes = {
            u: NodeProcess(u, (roles or {}).get(u, role), self.workdir / f"node-{u}") for u in units
        }
        self.images = {
            r: self.image if r == role else self.workdir / f"image-{r}"
            for r in sorted({n.role for n in self.nodes.values()})
        }
        self.image_manifests: dict[str, dict[str, Any]] = {}
        self.ports: dict[str, Any] = {}
        self._bus: subprocess.Popen[bytes] | None = None
        self._bus_log: IO[bytes] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self.bus_args: list[str] = []
        """Extra options of the bus process (``tools.sim.bus``), e.g. ``["--trace", path]``."""
        self._finalizer = weakref.finalize(self, _kill_all, self._procs)
        self.hardware: dict[int, dict[str, Any]] = {}
        """Per unit, what every start adds to its ``sim.json`` (e.g. ``{"radio": "127.0.0.1:PORT"}``)."""

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Build the image, start the bus and every node, wait until all are ready; the manifest."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            for r, folder in self.images.items():
                self.image_manifests[r] = build_image("sim", r, folder)
            self.image_manifest = self.image_manifests.get(self.role, {})
            self._start_bus(timeout)
            for unit in self.nodes:
                self.start_node(unit, wait=False)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        manifest = self.manifest()
        (self.workdir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return manifest

    def stop(self) -> None:
        """Stop every node, then the bus (SIGTERM, then SIGKILL after a grace period)."""
        for node in self.nodes.values():
            self._stop_proc(node.proc, signal.SIGTERM)
            node._close_log()
        self._stop_proc(self._bus, signal.SIGTERM)
        self._bus = None
        if self._bus_log is not None:
            self._bus_log.close()
            self._bus_log = None

    def __enter__(self) -> VirtualStreet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the bus -----------------------------------------------------------

    def _start_bus(self, timeout: float) -> None:
        ports_path = self.workdir / f"{BUS_NAME}.ports.json"
        ports_path.unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "tools.sim.bus",
            "--drops", str(self.drop_count()),
            "--ports", str(ports_path),
            "--stats", str(self.workdir / f"{BUS_NAME}.stats.json"),
            "--baud", str(self.baud),
            "--noise", str(self.noise),
            "--drop", str(self.drop),
            "--seed", str(self.seed),
            "--watch-parent",
        ]
        if self.paced:
            cmd.append("--paced")
        cmd += self.bus_args
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self._bus_log = (self.workdir / f"{BUS_NAME}.log").open("ab")
        self._bus = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            stdout=self._bus_log, stderr=subprocess.STDOUT,
        )
        self._procs.append(self._bus)
        deadline = time.monotonic() + timeout
        while not ports_path.exists():
            if self._bus.poll() is not None:
                raise StreetError(f"the bus exited with {self._bus.returncode}; see {BUS_NAME}.log")
            if time.monotonic() > deadline:
                raise StreetError("the bus did not publish its ports in time")
            time.sleep(0.02)
        self.ports = json.loads(ports_path.read_text())

    def drop_count(self) -> int:
        """Node drops the bus opens: one per node (a street that hosts its nodes otherwise says so)."""
        return len(self.nodes)

    def bus_stats(self) -> dict[str, Any]:
        """The bus's counters (updated every second): corrupted, lost, collisions, per drop."""
        try:
            stats: dict[str, Any] = json.loads(
                (self.workdir / f"{BUS_NAME}.stats.json").read_text()
            )
        except (OSError, ValueError):
            return {}
        return stats

    @property
    def master_device(self) -> str:
        """The pty a Modbus master (the gateway, pymodbus, mbpoll) opens."""
        return str(self.ports["master"])

    # -- nodes -------------------------------------------------------------

    def node(self, unit: int) -> NodeProcess:
        """The node with Modbus unit ``unit``."""
        return self.nodes[unit]

    def start_node(
        self,
        unit: int,
        *,
        wait: bool = True,
        timeout: float = 30.0,
        hardware: dict[str, Any] | None = None,
    ) -> NodeProcess:
        """(Re)start the node's process: power applied. Waits for its ready line if ``wait``.

        ``hardware`` adds to the node's ``sim.json`` for this start, e.g.
        ``{"fault": "driver"}`` (dead LED driver) or ``{"ambient_c": 90}``; for
        a meter ``{"water": {"mode": "leak"}}``, for an environment node
        ``{"weather": {"temperature_c": 21.5}, "bme280": "absent"}`` (see
        ``boards/sim``).
        """
        node = self.nodes[unit]
        if node.alive():
            raise StreetError(f"{node.id} is already running")
        node.flash.mkdir(parents=True, exist_ok=True)
        config = node.flash / "config.json"
        if not config.exists():
            config.write_text(json.dumps({"unit": unit, "role": node.role, "baud": self.baud}))
        index = unit - min(self.nodes)
        wiring = {
            "uart": self.ports["drops"][index],
            "baud": self.baud,
            "seed": self.seed * 1000 + unit,
        }
        wiring.update(self.hardware.get(unit, {}))
        wiring.update(hardware or {})
        (node.flash / "sim.json").write_text(json.dumps(wiring))
        node._close_log()
        node._log_file = node.log.open("ab")
        node.log_offset = node.log.stat().st_size
        env = dict(os.environ)
        image = self.images[node.role]
        if self.rom:
            heap = heap_bytes(self.heapsize) + install_code(image, node.flash)
            env["MICROPYPATH"] = ".frozen"
            argv = [micropython_path(), "-X", f"heapsize={heap}", "main.py"]
        else:
            env["MICROPYPATH"] = f"{image}:.frozen"
            argv = [micropython_path(), "-X", f"heapsize={self.heapsize}", str(image / "main.py")]
        node.proc = subprocess.Popen(
            argv, cwd=node.flash, env=env, stdin=subprocess.DEVNULL,
            stdout=node._log_file, stderr=subprocess.STDOUT,
        )
        self._procs.append(node.proc)
        if wait:
            self.wait_ready(timeout, units=[unit])
        return node

    def kill_node(self, unit: int) -> None:
        """SIGKILL the node's process: a power cut at an arbitrary instant."""
        node = self.nodes[unit]
        self._stop_proc(node.proc, signal.SIGKILL)
        node._close_log()

    def wait_ready(self, timeout: float = 30.0, units: list[int] | None = None) -> None:
        """Wait until every node (or ``units``) printed its ready line; raise if one died."""
        waiting = [self.nodes[u] for u in (units if units is not None else self.nodes)]
        deadline = time.monotonic() + timeout
        while waiting:
            for node in list(waiting):
                if node.ready():
                    waiting.remove(node)
                elif not node.alive():
                    raise StreetError(f"{node.id} exited before it was ready:\n{node.log_tail()}")
            if not waiting:
                return
            if time.monotonic() > deadline:
                names = ", ".join(n.id for n in waiting)
                raise StreetError(f"not ready after {timeout} s: {names}\n{waiting[0].log_tail()}")
            time.sleep(0.02)

    def manifest(self) -> dict[str, Any]:
        """Where everything is, for a gateway configuration or a test."""
        return {
            "buses": [
                {
                    "name": BUS_NAME,
                    "device": self.master_device,
                    "baud": self.baud,
                    "paced": self.paced,
                }
            ],
            "nodes": [
                {
                    "id": n.id,
                    "unit": n.unit,
                    "role": n.role,
                    "bus": BUS_NAME,
                    "flash": str(n.flash),
                    "pid": n.pid,
                }
                for n in self.nodes.values()
            ],
        }

    def _stop_proc(self, proc: subprocess.Popen[bytes] | None, sig: int) -> None:
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc in self._procs:
            self._procs.remove(proc)
