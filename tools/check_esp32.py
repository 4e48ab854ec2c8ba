"""Static check of the ESP32 images against the ESP32 port's API (``micropython-esp32-stubs``), with mypy.

The ESP32 boards cannot run here, so each (board, role) image is type-checked
as it will be flashed: the exact files :func:`tools.image.image_sources`
puts in the image (``main.py``, ``board/`` = ``boards/esp32_<x>/``,
``esp32_common/``, the role's trimmed ``firmware/`` and ``protocols/``) are
linked into a folder with the image's layout, so ``import board`` in
``main.py`` and ``board.Board`` in a role's annotations resolve to that
board, and mypy checks them with:

- ``custom_typeshed_dir`` = a typeshed whose ``stdlib`` is
  ``micropython-stdlib-stubs`` (MicroPython's ``asyncio``, ``os``, ``json``,
  ``struct``, ``array``, ``builtins`` ... instead of CPython's);
- ``mypy_path`` = the ``micropython-esp32-stubs`` modules (``machine``,
  ``esp32``, ``micropython``, ``time`` with ``ticks_ms``, ``gc`` ...), which
  shadow the stdlib's where both exist;
- ``check_untyped_defs``: bodies of unannotated functions are checked too.

What it catches: a misspelled keyword (``machine.UART(1, baudrat=9600)``), a
method the port does not have (``uart.flushh()``, ``pin.hold()``), a wrong
argument type or count, a missing module or name, a use of a possibly-None
result (``uart.read()`` returns None when nothing arrived) in the board code,
and any call a role makes on its board that the ESP32 board does not provide
(the meter and environment roles annotate ``board`` as ``board.Board``).

Not held against ``firmware/`` and ``protocols/`` (code for both interpreters,
mostly without annotations): ``union-attr``, ``operator``, ``var-annotated``,
``assignment``, ``no-redef``, ``type-var`` (Optional narrowing, inference of
re-bound names and fallbacks: typing strictness, not API misuse); the board
packages are held to all of them. A missing ``zlib`` is allowed (only ever
imported where ``binascii`` lacks ``crc32``), as is ``cryptography`` (only
where ``cryptolib`` is missing: AES-CCM in ``protocols/ccm.py``). Filtered everywhere: mypy's
complaint about the ``try: from micropython import const / except
ImportError: def const(x)`` fallback (the stub's ``const`` is generic), and
errors inside the stubs.

Command line: ``python -m tools.check_esp32`` (exit 1 on errors).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from tools.image import REPO, boards, image_sources, imageinfo_text, roles_of

_FILTERED = re.compile(r"All conditional function variants must have identical signatures")
_RELAXED = ("firmware.*", "protocols.*")
_RELAXED_CODES = "union-attr, operator, var-annotated, assignment, no-redef, type-var"
_FALLBACKS = ("zlib", "cryptography.*", "sim_rom")
"""Modules imported only where the MicroPython one is missing: CPython's, and the virtual board's stand-in for
``vfs.rom_ioctl`` (its ROM partitions)."""


def stubs_dir() -> Path:
    """site-packages of this interpreter, where micropython-esp32-stubs installs its modules."""
    site = Path(sysconfig.get_paths()["purelib"])
    if not (site / "machine.pyi").exists() or not (site / "stdlib" / "VERSIONS").exists():
        raise RuntimeError("micropython-esp32-stubs (and micropython-stdlib-stubs) are not installed here")
    return site


def esp32_boards() -> list[str]:
    """The ESP32 boards (image boards whose name starts with esp32_)."""
    return [b for b in boards() if b.startswith("esp32_")]


def _layout(work: Path) -> tuple[Path, Path]:
    """Typeshed and stub folders for mypy, made of links into the installed stub packages."""
    site = stubs_dir()
    typeshed = work / "typeshed"
    (typeshed / "stubs" / "mypy-extensions").mkdir(parents=True)
    (typeshed / "stdlib").symlink_to(site / "stdlib")
    ext = site / "stubs" / "mypy-extensions" / "mypy_extensions.pyi"
    if ext.exists():
        (typeshed / "stubs" / "mypy-extensions" / "mypy_extensions.pyi").symlink_to(ext)
    esp32 = work / "esp32"
    esp32.mkdir()
    for p in site.glob("*.pyi"):
        (esp32 / p.name).symlink_to(p)
    for d in ("_mpy_shed", "umqtt", "requests", "mip"):
        if (site / d).is_dir():
            (esp32 / d).symlink_to(site / d)
    return typeshed, esp32


def _config(work: Path, typeshed: Path, esp32: Path, name: str) -> Path:
    stub_modules = sorted({p.stem for p in esp32.glob("*.pyi")} | {"_mpy_shed.*", "asyncio.*", "builtins"})
    text = f"""[mypy]
python_version = 3.11
custom_typeshed_dir = {typeshed}
mypy_path = {esp32}
no_site_packages = True
check_untyped_defs = True
show_error_codes = True
cache_dir = {work / "cache" / name}

[mypy-{",".join(_RELAXED)}]
disable_error_code = {_RELAXED_CODES}

[mypy-{",".join(stub_modules)}]
ignore_errors = True

[mypy-{",".join(_FALLBACKS)}]
ignore_missing_imports = True
"""
    path = work / f"mypy-{name}.ini"
    path.write_text(text)
    return path


def check(board: str, role: str, work: Path, replace: dict[str, str] | None = None) -> list[str]:
    """mypy's errors on the image of ``board``/``role`` (paths as in the repository); [] if clean.

    ``replace`` maps repository paths to other source text, checked instead of
    the file (a test plants a mistake without touching the repository).
    """
    tree = work / f"{board}-{role}"
    back: dict[str, str] = {}
    for src, rel in image_sources(board, role, typing=True):
        dest = tree / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        text = (replace or {}).get(str(src.relative_to(REPO)))
        if text is None:
            dest.symlink_to(src)
        else:
            dest.write_text(text)
        back[str(Path(f"{board}-{role}") / rel)] = str(src.relative_to(REPO))
    (tree / "firmware" / "imageinfo.py").write_text(imageinfo_text(board, role))  # generated into the image
    typeshed, esp32 = (work / "typeshed", work / "esp32")
    if not typeshed.exists():
        typeshed, esp32 = _layout(work)
    config = _config(work, typeshed, esp32, f"{board}-{role}")
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(config), "--no-error-summary", f"{board}-{role}"]
    env = dict(os.environ, MYPYPATH=str(esp32))
    proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env, check=False)
    errors = []
    for line in (proc.stdout + proc.stderr).splitlines():
        if ": error:" not in line or _FILTERED.search(line):
            continue
        path = line.split(":", 1)[0]
        if path not in back:
            continue  # inside the stubs
        errors.append(back[path] + line[len(path):])
    if proc.returncode not in (0, 1):
        errors.append(f"mypy failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return errors


def check_all(work: Path | None = None) -> dict[str, list[str]]:
    """Errors per ``board/role`` image of every ESP32 board."""
    with tempfile.TemporaryDirectory(prefix="esp32-check-") as tmp:
        base = Path(work) if work is not None else Path(tmp)
        return {f"{b}/{r}": check(b, r, base) for b in esp32_boards() for r in roles_of(b)}


def main() -> int:
    """``python -m tools.check_esp32``: print every error; exit 1 if there is one."""
    results = check_all()
    bad = 0
    for image, errors in results.items():
        print(f"{image}: {'ok' if not errors else f'{len(errors)} error(s)'}")
        for e in errors:
            print("  " + e)
        bad += len(errors)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
