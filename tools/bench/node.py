"""``streetedge bench node``: the node firmware of each role, measured on the virtual street.

For each role, one run on this machine:

- image sizes: the role's image for the virtual board (bytecode) and for its
  ESP32 board (``-march=xtensawin``), in bytes (``tools.image``);
- one node of the role on a virtual street at ``-X heapsize=128K`` (the
  ESP32's heap budget on the 64-bit unix port), its physics running (a meter
  counts 2 l/s, an environment node reads its sensors every 1-2 s), and a
  pymodbus master polling its role table (input registers 0..) back to back
  for ``seconds``; a node that cannot boot or serve there is tried again with
  16K more until it does (up to 256K), and the table says which heap the
  figures were taken at;
- from the node's ``diag.json``: ``heap_peak`` (the largest heap in use seen
  just before a collection: live data plus one sample period's garbage),
  ``heap_live`` (after the last collection) and the Modbus turnaround (request
  end to answer written: last and worst);
- from the master: request to answer round trips (p50, p99, worst), which
  add the pty, the bus process and pymodbus to the node's own turnaround.

``--write-docs`` records the table between the ``bench node`` markers of
docs/performance.md.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pymodbus.client import ModbusSerialClient

from protocols.regmap import INPUT
from protocols.roles import load
from tools.bench import record
from tools.image import build_image
from tools.sim.street import StreetError, VirtualStreet

HEAPSIZE = "128K"
HEAPS = ("128K", "144K", "160K", "176K", "192K", "224K", "256K")
WARMUP = 3.0
_CONTROL = {
    "meter": {"water": {"mode": "constant", "lpm": 120.0}},
    "env": {},
    "lamp": {},
}
_CONFIG = {"env": {"climate_period": 1, "pm_period": 2}}


def image_sizes(role: str, work: Path) -> dict[str, int]:
    """Bytes of the role's image for the virtual board and for its ESP32 board."""
    sim = build_image("sim", role, work / f"img-sim-{role}")
    esp = build_image(f"esp32_{role}", role, work / f"img-esp32-{role}")
    return {"sim": int(sim["total_bytes"]), "esp32": int(esp["total_bytes"]), "esp32_files": len(esp["files"])}


def _diag(flash: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((flash / "diag.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def measure_role(role: str, seconds: float, work: Path, heapsize: str = HEAPSIZE) -> dict[str, Any]:
    """Run one node of ``role`` under a polling master; heap, turnaround and round-trip figures.

    Raises StreetError if the node does not boot at ``heapsize``.
    """
    street = VirtualStreet(work / f"street-{role}-{heapsize}", nodes=1, role=role, heapsize=heapsize)
    node = street.node(1)
    node.flash.mkdir(parents=True, exist_ok=True)
    (node.flash / "control.json").write_text(json.dumps(_CONTROL.get(role, {})))
    rmap = load(role)
    count = max(r.address + r.width for r in rmap.registers if r.table == INPUT and r.address < 100)
    rtts: list[float] = []
    errors = 0
    with street:
        street.start()
        client = ModbusSerialClient(street.master_device, baudrate=street.baud, timeout=1.0, retries=0)
        assert client.connect()
        try:
            for name, raw in _CONFIG.get(role, {}).items():
                reg = rmap[name]
                client.write_registers(reg.address, list(reg.words(raw)), device_id=1)
            start = time.monotonic()
            while time.monotonic() - start < WARMUP + seconds:
                t = time.perf_counter()
                try:
                    rr = client.read_input_registers(0, count=count, device_id=1)
                    ok = not rr.isError()
                except Exception:  # a lost answer is a figure, not a crash of the bench
                    ok = False
                took = time.perf_counter() - t
                if time.monotonic() - start < WARMUP:
                    continue
                if ok:
                    rtts.append(took)
                else:
                    errors += 1
            # diag.json is written every 10 s: wait for one that covers the window.
            deadline = time.monotonic() + 15
            d = _diag(node.flash)
            while d.get("uptime", 0) < WARMUP + seconds and time.monotonic() < deadline:
                time.sleep(0.5)
                d = _diag(node.flash)
        finally:
            client.close()  # type: ignore[no-untyped-call]
        alive = node.alive()
    rtts.sort()
    return {
        "role": role,
        "heapsize": heapsize,
        "alive": alive,
        "heap_peak": d.get("heap_peak"),
        "heap_live": d.get("heap_live"),
        "turnaround_us": d.get("turnaround_us"),
        "turnaround_max_us": d.get("turnaround_max_us"),
        "requests": len(rtts),
        "errors": errors,
        "rtt_p50_ms": 1000 * statistics.median(rtts) if rtts else None,
        "rtt_p99_ms": 1000 * rtts[int(0.99 * (len(rtts) - 1))] if rtts else None,
        "rtt_max_ms": 1000 * rtts[-1] if rtts else None,
        "registers": count,
    }


def _kb(n: Any) -> str:
    return f"{n / 1024:.1f}" if isinstance(n, int | float) else "n/a"


def _ms(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, int | float) else "n/a"


def table(rows: list[dict[str, Any]], seconds: float) -> str:
    """The Markdown table of the figures."""
    lines = [
        f"One node per role, from `-X heapsize={HEAPSIZE}` (the ESP32 budget on the 64-bit port) up by 16K "
        "until it serves, a pymodbus master reading the role's input table "
        f"back to back for {seconds:g} s after {WARMUP:g} s of warm-up; {time.strftime('%Y-%m-%d')}, "
        f"2 shared cores, load average {os.getloadavg()[0]:.1f} at the end (other work on the machine).",
        "",
        "| role | image sim (KB) | image ESP32 xtensawin (KB) | smallest heap that serves | heap peak (KB) "
        "| heap live (KB) | turnaround last / worst (µs) | round trip p50 / p99 / worst (ms) | reads (errors) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['role']} | {_kb(r['image_sim'])} | {_kb(r['image_esp32'])} | {r['heapsize']} "
            f"| {_kb(r['heap_peak'])} "
            f"| {_kb(r['heap_live'])} | {r['turnaround_us']} / {r['turnaround_max_us']} "
            f"| {_ms(r['rtt_p50_ms'])} / {_ms(r['rtt_p99_ms'])} / {_ms(r['rtt_max_ms'])} "
            f"| {r['requests']} ({r['errors']}) |"
        )
    return "\n".join(lines)


def run_node_bench(roles: list[str], seconds: float = 20.0, write_docs: bool = False) -> int:
    """Measure every role, print the table (and record it); 1 if a node died or never answered."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        work = Path(tmp)
        for role in roles:
            sizes = image_sizes(role, work)
            figures: dict[str, Any] = {}
            for heap in HEAPS:
                try:
                    figures = measure_role(role, seconds, work, heap)
                except StreetError as exc:
                    print(f"{role}: does not boot at {heap}: {str(exc).splitlines()[-1]}", flush=True)
                    continue
                if figures["alive"] and figures["requests"]:
                    break
                print(f"{role}: does not serve at {heap}", flush=True)
            if not figures:
                figures = {"role": role, "heapsize": f"> {HEAPS[-1]}", "alive": False, "requests": 0, "errors": 0}
                figures.update(dict.fromkeys(("heap_peak", "heap_live", "turnaround_us", "turnaround_max_us",
                                              "rtt_p50_ms", "rtt_p99_ms", "rtt_max_ms")))
            figures["image_sim"] = sizes["sim"]
            figures["image_esp32"] = sizes["esp32"]
            rows.append(figures)
            print(json.dumps(figures), flush=True)
    text = table(rows, seconds)
    print(text)
    if write_docs:
        command = f"streetedge bench node --roles {','.join(roles)} --seconds {seconds:g} --write-docs"
        record("bench node", "Node firmware per role (virtual street, 128K heap)", command, text)
    return 0 if all(r.get("alive") and r.get("requests") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(run_node_bench(["lamp", "meter", "env"], seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 20.0))
