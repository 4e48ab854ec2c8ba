"""What the update scenarios share on the virtual street: nodes powered up again after a reset, and images."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

from tools.image import mpy_cross_path
from tools.romfs import build_romfs
from tools.sim.street import VirtualStreet


class PowerUp:
    """Starts every node of ``street`` again whenever its process ends, as a chip boots again after a reset."""

    def __init__(self, street: VirtualStreet) -> None:
        self.street = street
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for unit, node in self.street.nodes.items():
                if not node.alive():
                    self.street.start_node(unit, wait=False)

    def __enter__(self) -> PowerUp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
