"""Other images of a virtual street's node image for update tests: a marker file, or one that cannot boot."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tools.image import mpy_cross_path
from tools.romfs import build_romfs
from tools.sim.street import VirtualStreet


def variant_image(street: VirtualStreet, work: Path, tag: str, *, broken: bool = False) -> bytes:
    """The street's ROMFS image with a marker file ``tag`` (other bytes, the same code), or one that cannot boot."""
    folder = work / f"image-{tag}"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(street.image, folder)
    (folder / "version.txt").write_text(tag)
    if broken:
        src = work / "node.py"
        src.write_text("raise RuntimeError('this image cannot boot')\n")
        subprocess.run([mpy_cross_path(), "-o", str(folder / "firmware" / "node.mpy"), "-s",
                        "firmware/node.py", str(src)], check=True)
    return build_romfs(folder)
