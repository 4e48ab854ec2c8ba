"""What a role's code costs in RAM on the unix port: heap and interned names, module by module.

    python -m tools.bench.rom_imports --role lamp [--files] [--heapsize 512K]
    python -m tools.bench.rom_imports --role meter-ble   # the meter with its BLE part's modules

Builds the role's image for the virtual board (``tools.image``), mounts its
ROMFS image with ``vfs.VfsRom`` as ``firmware/update_boot.py`` does (or, with
``--files``, imports the same ``.mpy`` files from the image folder: bytecode
read into the heap), imports the node's modules in boot order and prints, per
module, the heap it added (``gc.mem_alloc()`` after a collection, the image's
buffer left out) and the interned names (qstrs) the node then holds, then the
qstr pools: their RAM (entries: an 8-byte pointer, a hash and a length per
name; pools double in size as names are added, so a node holds entries for
up to twice the names it has) and the names' bytes, which for a module run
from ROMFS stay in the image (``micropython.qstr_info()`` counts them in its
``n_total_bytes`` all the same).

Heap figures are those of module objects, function and class objects, the
modules' dictionaries and constant tables and the pools; the node's data
(buffers, register tables, tasks) is not here: ``streetedge bench node`` has
the running node's figures.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.image import build_image
from tools.sim.street import micropython_path

# Boot order of a node: the node layer and what its boot code (firmware.node_boot, released after it) imports
# for good (storage and boot record, event log and clock, register bank, role loader), the role, the board;
# then what a role imports for a rare task, released after it.
_BOOT = ("asyncio", "firmware.node", "firmware.storage", "firmware.events", "firmware.registers", "firmware.roles",
         "firmware.config")
_RARE = {"lamp": ("board.lamp_parts", "firmware.roles.lamp_level", "firmware.roles.lamp_config",
                  "protocols.program_rules", "firmware.night_plan"),
         "meter": ("board.sensor_link", "board.meter_link"), "env": ("board.sensor_link",)}

_PROBE = """\
import gc, sys, micropython
image = {image!r}
if {rom!r}:
    import os, vfs
    buf = bytearray(os.stat(image + "/rom.img")[6])
    with open(image + "/rom.img", "rb") as f:
        f.readinto(buf)
    vfs.mount(vfs.VfsRom(buf), "/rom")
    sys.path.insert(0, "/rom")
else:
    sys.path.insert(0, image)
gc.collect()
start = gc.mem_alloc()
for name in {modules!r}:
    gc.collect()
    before = gc.mem_alloc()
    __import__(name)
    gc.collect()
    print("MODULE", name, gc.mem_alloc() - before, gc.mem_alloc() - start)
    micropython.qstr_info()
"""
_QSTR = re.compile(r"qstr pool: n_pool=(\d+), n_qstr=(\d+), n_str_data_bytes=(\d+), n_total_bytes=(\d+)")


# A BLE node (``meter-ble``, ``env-ble``: the role with its adverts and GATT service running) imports these too.
_BLE = ("protocols.bthome", "protocols.ble_gatt_server", "firmware.ble_beacon",
        "board.bluetooth")


def modules_of(role: str) -> list[str]:
    """The modules a node of ``role`` imports, in boot order (rare tasks, then the BLE part of a ``-ble`` role)."""
    base = role.removesuffix("-ble")
    ble = _BLE if role != base else ()
    return [*_BOOT, f"protocols.roles.{base}", f"firmware.roles.{base}", "board", *_RARE.get(base, ()), *ble]


def measure(role: str, work: Path, rom: bool = True, heapsize: str = "512K") -> list[dict[str, Any]]:
    """Per module of a ``role`` node (boot order): ``module``, ``heap`` (bytes it added), ``total``, ``qstrs``,
    ``pools``, ``pool_bytes`` (the pools' RAM) and ``name_bytes`` (the names' characters, ROM or RAM)."""
    image = build_image("sim", role.removesuffix("-ble"), work / f"image-{role}")
    if rom and "rom" not in image:
        raise RuntimeError("the image has no ROMFS image")
    probe = work / "probe.py"
    probe.write_text(_PROBE.format(image=str(work / f"image-{role}"), rom=rom, modules=modules_of(role)))
    result = subprocess.run([micropython_path(), "-X", f"heapsize={heapsize}", str(probe)], cwd=work,
                            capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"the probe failed: {result.stdout}{result.stderr}")
    rows: list[dict[str, Any]] = []
    for line in result.stdout.splitlines():
        if line.startswith("MODULE "):
            _, name, heap, total = line.split()
            rows.append({"module": name, "heap": int(heap), "total": int(total)})
        elif (m := _QSTR.match(line)) and rows:
            pools, names, name_bytes, total_bytes = (int(g) for g in m.groups())
            rows[-1].update(qstrs=names, pools=pools, pool_bytes=total_bytes - name_bytes, name_bytes=name_bytes)
    return rows


def report(role: str, rows: list[dict[str, Any]], rom: bool) -> str:
    """The figures as text."""
    where = "ROMFS image, in place" if rom else "image files, read into the heap"
    lines = [f"{role}: modules imported from its {where}", f"{'module':32} {'heap B':>8} {'total B':>8} {'names':>6}"]
    lines += [f"{r['module']:32} {r['heap']:8d} {r['total']:8d} {r.get('qstrs', 0):6d}" for r in rows]
    last = rows[-1]
    lines.append(f"qstr pools: {last['pools']}, {last['pool_bytes']} B of RAM for {last['qstrs']} names "
                 f"(their {last['name_bytes']} B of characters: in the image for names of modules run from ROMFS)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.bench.rom_imports``: print the figures of one role."""
    p = argparse.ArgumentParser(prog="python -m tools.bench.rom_imports", description=__doc__.splitlines()[0])
    p.add_argument("--role", default="lamp", help="lamp, meter, env, or meter-ble / env-ble (with the BLE part)")
    p.add_argument("--files", action="store_true", help="import the image's files instead of its ROMFS image")
    p.add_argument("--heapsize", default="512K")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rom-imports-") as tmp:
        rows = measure(args.role, Path(tmp), rom=not args.files, heapsize=args.heapsize)
    print(report(args.role, rows, rom=not args.files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
