"""``streetedge bench node``: the node firmware of each role, measured on the virtual street.

For each role, one run on this machine:

- image sizes: the role's image for the virtual board (bytecode) and for its
  ESP32 board (``-march=xtensawin``), in bytes (``tools.image``);
- one node of the role on a virtual street at ``-X heapsize=128K`` (the
  ESP32's heap budget on the 64-bit unix port) plus exactly its ROMFS image's
  size (the node runs its code in place from that image: a buffer in the heap
  here, memory-mapped flash on an ESP32; every heap figure below leaves the
  buffer out, ``rom_heap`` in ``diag.json``) with every feature of its role
  at work, and a pymodbus master polling its role table (input registers 0..)
  back to back for ``seconds``:

  - lamp: position, time zone, two programs and a calendar written, the clock
    set while the virtual world runs 60x (the program is evaluated every
    second: a virtual minute), program mode; every few seconds one of: a
    program rewritten, the calendar rewritten, an override started or ended,
    a photocell setting; a gateway write of ``dim_level`` and back to program
    mode now and then;
  - meter: 2 l/s through it (a pulse a second, volumes saved), a setting
    written every few seconds;
  - env: BME280 every 1 s, SDS011 every 2 s, noise every sample, a setting
    written every few seconds;
  - meter-ble, env-ble: the meter or env node as above as a battery BLE node
    (``"bus": false``: no Modbus slave), its BLE part running (``ble.json``:
    encrypted adverts every second on the virtual radio, its GATT service),
    driven over the radio instead of the bus: the writes as GATT writes, GATT
    reads back to back (``tools.bench.node_radio``);

  a node that cannot boot or serve there is tried again with 16K more until
  it does (up to 256K), and the table says which heap the figures were taken
  at;
- from the node's ``diag.json``: ``heap_peak`` (the most in use right after a
  collection: each sample's, and the lamp's at the height of a settings write
  or a night plan, while it holds that code: what the node needs),
  ``heap_live`` (after the last collection), ``heap_gc_peak`` (the most seen
  just before the sampler's collection: with one sample period's garbage, at
  most the heap), the evaluations skipped for want of RAM and the Modbus
  turnaround (request end to answer written): the worst for reads, how many
  answers to reads took over 5 ms (of all answers), and the worst overall
  (writes store settings in flash before they answer);
- from the master: request to answer round trips (p50, p99, worst) of the
  reads, which add the pty, the bus process and pymodbus to the node's own
  turnaround, and the writes the node refused (any is a failure of the run).

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

from protocols.programs import FIXED, SUNRISE, SUNSET
from protocols.regmap import INPUT
from protocols.roles import load
from protocols.roles.lamp import CALENDAR_START, CALENDAR_WORDS, PROGRAM_START
from tools.bench import record
from tools.bench.node_radio import measure_radio_role
from tools.image import build_image
from tools.sim.street import StreetError, VirtualStreet

HEAPSIZE = "128K"
HEAPS = ("128K", "144K", "160K", "176K", "192K", "224K", "256K")
WARMUP = 3.0
WRITE_EVERY = 2.0  # seconds between two feature writes
_CONTROL: dict[str, dict[str, Any]] = {
    "meter": {"water": {"mode": "constant", "lpm": 120.0}},
    "env": {},
    "lamp": {},
}
_EPOCH = 1736946000  # 2025-01-15 13:00 UTC: a January afternoon, sunset within the first minutes at 60x
_SPEED = 60
_AMSTERDAM = {"tz_offset": 60, "latitude": 52_370_000, "longitude": 4_900_000}
_NIGHT = [(SUNSET, 0, 100), (FIXED, 23 * 60, 50), (FIXED, 5 * 60, 100), (SUNRISE, 0, 0)]
_EVENING = [(SUNSET, -15, 80), (FIXED, 22 * 60, 30), (SUNRISE, 15, 0)]


def image_sizes(role: str, work: Path) -> dict[str, int]:
    """Bytes of the role's image for the virtual board and for its ESP32 board."""
    sim = build_image("sim", role, work / f"img-sim-{role}")
    esp = build_image(f"esp32_{role}", role, work / f"img-esp32-{role}")
    return {"sim": int(sim["total_bytes"]), "esp32": int(esp["total_bytes"]), "esp32_files": len(esp["files"]),
            "rom": int(sim["rom"]["bytes"])}


def _diag(flash: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((flash / "diag.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def _words(rmap: Any, **values: int) -> list[tuple[int, list[int]]]:
    """(address, words) of a write of each register named in ``values`` (raw values)."""
    return [(rmap[name].address, list(rmap[name].words(raw))) for name, raw in values.items()]


def _program(pid: int, points: list[tuple[int, int, int]]) -> tuple[int, list[int]]:
    words = [pid, len(points)]
    for kind, offset, level in points:
        words += [kind, offset & 0xFFFF, level]
    return (PROGRAM_START, words)


def _calendar(default: int, rules: list[tuple[int, int, int, int]]) -> tuple[int, list[int]]:
    words = [default]
    for rule in rules:
        words += list(rule)
    return (CALENDAR_START, words + [0] * (CALENDAR_WORDS - len(words)))


def setup_writes(role: str, rmap: Any) -> list[tuple[int, list[int]]]:
    """The writes that switch every feature of ``role`` on (the lamp's clock is set apart: it reads the world)."""
    if role == "lamp":
        return [*_words(rmap, **_AMSTERDAM), _program(0, _NIGHT), _program(1, _EVENING),
                _calendar(0, [(1, 0b1100000, 0, 0)])]
    if role == "env":
        return _words(rmap, climate_period=1, pm_period=2)
    return []


def feature_writes(role: str, rmap: Any, i: int) -> list[tuple[int, list[int]]]:
    """The ``i``-th write of the run's cycle: each exercises a feature that allocates on the node."""
    if role == "lamp":
        cycle = [
            [_program(1, [(p[0], p[1], max(0, p[2] - 10 * (i % 3))) for p in _EVENING])],
            [_calendar(0, [(1, 0b1100000, 0, 0), (1, 0, 1224, 1226)][: 1 + i % 2])],
            _words(rmap, override_level=40, override_minutes=30),
            _words(rmap, override_minutes=0),
            _words(rmap, photo_on=20 + i % 5, photo_off=60),
            _words(rmap, dim_level=70),  # the gateway takes control ...
            _words(rmap, mode=1),  # ... and gives it back to the program
            _words(rmap, photo_off=0),
        ]
        return cycle[i % len(cycle)]
    if role == "meter":
        return _words(rmap, leak_gap=900 + i % 2) if i % 2 else _words(rmap, debounce=20 + i % 3)
    return _words(rmap, noise_offset=i % 5) if i % 2 else _words(rmap, temperature_offset=-(i % 7))


def _write(client: ModbusSerialClient, writes: list[tuple[int, list[int]]]) -> int:
    """Send the writes; how many the node refused or left unanswered."""
    refused = 0
    for address, words in writes:
        try:
            rr = client.write_registers(address, [w & 0xFFFF for w in words], device_id=1)
            refused += int(rr.isError())
        except Exception:  # a lost answer is a figure, not a crash of the bench
            refused += 1
    return refused


def control(role: str) -> dict[str, Any]:
    """The virtual world's ``control.json`` of a node of ``role`` in the bench."""
    control = dict(_CONTROL.get(role, {}))
    if role == "lamp":
        control.update(epoch=_EPOCH, speed=_SPEED)
    return control


def wait_diag(flash: Path, uptime: float) -> dict[str, Any]:
    """The node's ``diag.json`` once it covers ``uptime`` seconds (written every 10 s; 15 s at most)."""
    deadline = time.monotonic() + 15
    d = _diag(flash)
    while d.get("uptime", 0) < uptime and time.monotonic() < deadline:
        time.sleep(0.5)
        d = _diag(flash)
    return d


def measure_role(role: str, seconds: float, work: Path, heapsize: str = HEAPSIZE) -> dict[str, Any]:
    """Run one node of ``role`` with all its features under a polling master; heap, turnaround, round trips.

    ``meter-ble`` and ``env-ble`` are battery BLE nodes with no bus, driven over the radio instead
    (:mod:`tools.bench.node_radio`). Raises StreetError if the node does not boot at ``heapsize``.
    """
    if role.endswith("-ble"):
        return measure_radio_role(role, seconds, work, heapsize)
    street = VirtualStreet(work / f"street-{role}-{heapsize}", nodes=1, role=role, heapsize=heapsize)
    node = street.node(1)
    node.flash.mkdir(parents=True, exist_ok=True)
    (node.flash / "control.json").write_text(json.dumps(control(role)))
    rmap = load(role)
    count = max(r.address + r.width for r in rmap.registers if r.table == INPUT and r.address < 100)
    rtts: list[float] = []
    errors = 0
    writes = 0
    refused = 0
    with street:
        street.start()
        client = ModbusSerialClient(street.master_device, baudrate=street.baud, timeout=1.0, retries=0)
        assert client.connect()
        try:
            setup = setup_writes(role, rmap)
            refused += _write(client, setup)
            writes += len(setup)
            if role == "lamp":
                world = _world(node.flash)
                refused += _write(client, _words(rmap, clock=int(world.get("epoch", _EPOCH)), mode=1))
                writes += 2
            start = time.monotonic()
            next_write = start + WARMUP
            i = 0
            while time.monotonic() - start < WARMUP + seconds:
                if time.monotonic() >= next_write:
                    batch = feature_writes(role, rmap, i)
                    refused += _write(client, batch)
                    writes += len(batch)
                    i += 1
                    next_write += WRITE_EVERY
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
            d = wait_diag(node.flash, WARMUP + seconds)
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
        "heap_gc_peak": d.get("heap_gc_peak"),
        "rom_heap": d.get("rom_heap"),
        "short_of_ram": d.get("evaluations_short_of_ram"),
        "turnaround_us": d.get("turnaround_us"),
        "turnaround_max_us": d.get("turnaround_max_us"),
        "read_max_us": d.get("read_max_us"),
        "late_reads": d.get("late_reads"),
        "answered": d.get("answered"),
        "requests": len(rtts),
        "errors": errors,
        "writes": writes,
        "refused": refused,
        "rtt_p50_ms": 1000 * statistics.median(rtts) if rtts else None,
        "rtt_p99_ms": 1000 * rtts[int(0.99 * (len(rtts) - 1))] if rtts else None,
        "rtt_max_ms": 1000 * rtts[-1] if rtts else None,
        "registers": count,
    }


def radio_heap(flash: Path) -> int | None:
    """Bytes of the virtual radio's module and link to the radio host (``boards/sim/bluetooth.py``: C and the
    BLE stack's own heap on an ESP32), as the node measured them; None if it did not."""
    try:
        data = json.loads((flash / "radio_heap.json").read_text())
        return int(data["module"]) + int(data["link"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _world(flash: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            data: dict[str, Any] = json.loads((flash / "world.json").read_text())
            return data
        except (OSError, ValueError):
            time.sleep(0.2)
    return {}


def _kb(n: Any) -> str:
    return f"{n / 1024:.1f}" if isinstance(n, int | float) else "n/a"


def _ms(x: Any) -> str:
    return f"{x:.2f}" if isinstance(x, int | float) else "n/a"


def serves(r: dict[str, Any]) -> bool:
    """The node stayed up, answered reads, took every write and skipped no program evaluation."""
    return bool(r.get("alive") and r.get("requests") and not r.get("refused") and not r.get("short_of_ram"))


def table(rows: list[dict[str, Any]], seconds: float) -> str:
    """The Markdown table of the figures."""
    lines = [
        f"One node per role, running its code in place from its ROMFS image, from `-X heapsize={HEAPSIZE}` "
        "(the ESP32 budget on the 64-bit port) plus exactly the image's size (a buffer here, mapped flash on an "
        "ESP32: the heap figures leave it out) up by 16K until it serves every feature of its role "
        "(see tools/bench/node.py: the lamp's programs, calendar, "
        "override, photocell and gateway control with its program evaluated every second; the meter counting "
        "2 l/s; the environment node's three sensors; settings written every "
        f"{WRITE_EVERY:g} s), a pymodbus master reading the role's input table back to back for {seconds:g} s "
        f"after {WARMUP:g} s of warm-up (meter-ble, env-ble: battery BLE nodes with no bus, so no Modbus code "
        "loaded, advertising every second, their writes and back-to-back reads of 10 holding registers sent by "
        "the gateway's GATT sender, one connection each: tools/bench/node_radio.py); "
        f"{time.strftime('%Y-%m-%d')}, 2 shared cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (other work on the machine).",
        "",
        "| role | image sim (KB) | ROMFS image sim (KB) | image ESP32 xtensawin (KB) | heap (+ ROMFS) "
        "| heap peak (KB) | live at end (KB) "
        "| with garbage (KB) "
        "| writes (refused) | evaluations short of RAM | read turnaround worst (µs), over 5 ms "
        "| worst answer, writes included (µs) "
        "| round trip p50 / p99 / worst (ms) | reads (errors) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['role']} | {_kb(r['image_sim'])} | {_kb(r.get('image_rom'))} | {_kb(r['image_esp32'])} "
            f"| {r['heapsize']} "
            f"| {_kb(r['heap_peak'])} | {_kb(r['heap_live'])} | {_kb(r['heap_gc_peak'])} "
            f"| {r['writes']} ({r['refused']}) "
            f"| {r['short_of_ram'] if r['short_of_ram'] is not None else 'n/a'} "
            + (f"| {r.get('read_max_us')}, {r.get('late_reads')} of {r.get('answered')} | {r['turnaround_max_us']} "
               if r.get("bus", True) else "| no bus | no bus ")
            + f"| {_ms(r['rtt_p50_ms'])} / {_ms(r['rtt_p99_ms'])} / {_ms(r['rtt_max_ms'])} "
            f"| {r['requests']} ({r['errors']}) |"
        )
    radio = [r for r in rows if isinstance(r.get("radio_heap"), int) and isinstance(r.get("heap_peak"), int)]
    if radio:
        lines += ["", "Of a BLE role's heap, the virtual radio's own (`boards/sim/bluetooth.py`: its module, C in an "
                  "ESP32's firmware, and its link to the radio host, where an ESP32's BLE stack uses ESP-IDF's heap; "
                  "the BLE object and its attribute values stay counted): "
                  + "; ".join(f"{r['role']} {_kb(r['radio_heap'])} KB, peak without it "
                              f"{_kb(r['heap_peak'] - r['radio_heap'])} KB" for r in radio) + "."]
    return "\n".join(lines)


def run_node_bench(roles: list[str], seconds: float = 120.0, write_docs: bool = False) -> int:
    """Measure every role, print the table (and record it); 1 if a role does not serve everything at 128K."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-node-") as tmp:
        work = Path(tmp)
        for role in roles:
            sizes = image_sizes(role.removesuffix("-ble"), work)
            figures: dict[str, Any] = {}
            for heap in HEAPS:
                try:
                    figures = measure_role(role, seconds, work, heap)
                except StreetError as exc:
                    print(f"{role}: does not boot at {heap}: {str(exc).splitlines()[-1]}", flush=True)
                    continue
                if serves(figures):
                    break
                print(f"{role}: does not serve every feature at {heap}: {json.dumps(figures)}", flush=True)
            if not figures:
                figures = {"role": role, "heapsize": f"> {HEAPS[-1]}", "alive": False, "requests": 0, "errors": 0,
                           "writes": 0, "refused": 0}
                figures.update(dict.fromkeys(("heap_peak", "heap_live", "heap_gc_peak", "short_of_ram",
                                              "turnaround_us", "turnaround_max_us", "rtt_p50_ms", "rtt_p99_ms",
                                              "rtt_max_ms")))
            figures["image_sim"] = sizes["sim"]
            figures["image_esp32"] = sizes["esp32"]
            figures["image_rom"] = sizes["rom"]
            rows.append(figures)
            print(json.dumps(figures), flush=True)
    text = table(rows, seconds)
    print(text)
    if write_docs:
        command = f"streetedge bench node --roles {','.join(roles)} --seconds {seconds:g} --write-docs"
        record("bench node", "Node firmware per role (virtual street, 128K heap)", command, text)
    return 0 if all(serves(r) and r["heapsize"] == HEAPSIZE for r in rows) else 1


if __name__ == "__main__":
    sys.exit(run_node_bench(["lamp", "meter", "env"], seconds=float(sys.argv[1]) if len(sys.argv) > 1 else 120.0))
