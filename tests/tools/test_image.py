"""Device images: layout, manifest, compilation, and rebuild only on change."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.image import REPO, ImageError, build_image


def test_image_layout_and_manifest(tmp_path: Path) -> None:
    """main.py as source; firmware, protocols and board/ as .mpy; sizes and hashes listed."""
    out = tmp_path / "img"
    manifest = build_image("sim", "lamp", out)
    paths = {f["path"] for f in manifest["files"]}
    assert "main.py" in paths
    assert {"firmware/node.mpy", "firmware/roles/lamp.mpy", "board/__init__.mpy",
            "board/lamp_parts.mpy", "protocols/modbus/slave.mpy", "protocols/roles/lamp.mpy"} <= paths
    assert not any(p.endswith(".py") and p not in {"main.py", "update_boot.py"} for p in paths)
    # the virtual board's ROM partitions' driver: on the flash root (update_boot needs it to mount), not in ROM
    assert "sim_rom.mpy" in paths and "board/rom_partitions.mpy" not in paths
    assert "firmware/main.mpy" not in paths
    assert manifest["board"] == "sim" and manifest["role"] == "lamp"
    assert manifest["total_bytes"] == sum(f["size"] for f in manifest["files"])
    for f in manifest["files"]:
        data = (out / f["path"]).read_bytes()
        assert len(data) == f["size"]
        assert hashlib.sha256(data).hexdigest() == f["sha256"]
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert (out / "main.py").read_bytes() == (REPO / "firmware" / "main.py").read_bytes()
    # beside the image: what each module's short private names stand for, to read a node's traceback
    names = json.loads((out / "names.json").read_text())
    assert "names.json" not in paths and names.get("firmware/node.py"), names.keys()
    for rel, short in names.items():
        if rel.startswith(("firmware/", "protocols/")):
            source = (REPO / rel).read_text()
            assert all(old.startswith("_") and old in source for old in short.values()), (rel, short)
            assert len(set(short.values())) == len(short), rel


def test_an_unchanged_build_is_reused(tmp_path: Path) -> None:
    """Same sources and options: nothing is rewritten."""
    out = tmp_path / "img"
    build_image("sim", "lamp", out)
    stamp = (out / "firmware" / "node.mpy").stat().st_mtime_ns
    build_image("sim", "lamp", out)
    assert (out / "firmware" / "node.mpy").stat().st_mtime_ns == stamp


def test_a_damaged_image_is_rebuilt(tmp_path: Path) -> None:
    """A file missing from the folder forces a rebuild."""
    out = tmp_path / "img"
    build_image("sim", "lamp", out)
    (out / "firmware" / "node.mpy").unlink()
    build_image("sim", "lamp", out)
    assert (out / "firmware" / "node.mpy").exists()


def test_source_image_and_esp32_image(tmp_path: Path) -> None:
    """compile=False copies .py files; march=xtensawin builds ESP32 .mpy files."""
    src = build_image("sim", "lamp", tmp_path / "src", compile=False)
    assert "firmware/node.py" in {f["path"] for f in src["files"]}
    esp = build_image("sim", "lamp", tmp_path / "esp", march="xtensawin")
    assert esp["march"] == "xtensawin"
    assert esp["source_hash"] != src["source_hash"]


def test_unknown_board_or_role_is_refused(tmp_path: Path) -> None:
    """Errors name what is missing."""
    with pytest.raises(ImageError, match="unknown board"):
        build_image("nosuch", "lamp", tmp_path / "a")
    with pytest.raises(ImageError, match="unknown role"):
        build_image("sim", "toaster", tmp_path / "b")


def test_the_image_imports_on_the_unix_port(tmp_path: Path) -> None:
    """The compiled image loads in MicroPython from MICROPYPATH alone."""
    out = tmp_path / "img"
    build_image("sim", "lamp", out)
    probe = "import board; from firmware import node; print(board.Board.name)"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "micropython"), "-X", "heapsize=128K", "-c", probe],
        cwd=tmp_path, capture_output=True, text=True, check=False,
        env={**os.environ, "MICROPYPATH": f"{out}:.frozen"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "sim"


def test_rom_modules_carry_the_path_they_run_from(tmp_path: Path) -> None:
    """A module run from the ROMFS image names its ROM path in tracebacks: one interned name, not two."""
    out = tmp_path / "img"
    build_image("sim", "meter", out)
    probe = (
        "import os, sys, vfs\n"
        "buf = bytearray(os.stat('img/rom.img')[6])\n"
        "open('img/rom.img', 'rb').readinto(buf)\n"
        "vfs.mount(vfs.VfsRom(buf), '/rom')\n"
        "sys.path.insert(0, '/rom')\n"
        "from protocols.modbus import crc\n"
        "print(crc.__file__)\n"
        "try:\n"
        "    crc.crc16(None)\n"
        "except TypeError as exc:\n"
        "    sys.print_exception(exc)\n"
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "micropython"), "-X", "heapsize=256K", "-c", probe],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "/rom/protocols/modbus/crc.mpy"
    assert any(line.strip().startswith('File "/rom/protocols/modbus/crc.mpy", line') for line in lines[1:]), lines
