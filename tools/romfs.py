"""ROMFS images: the node's code as one read-only filesystem that MicroPython runs in place.

MicroPython 1.25+ mounts a ROMFS image with ``vfs.VfsRom`` and imports its
``.mpy`` files without copying their bytecode into the heap. An ESP32 keeps
the image in a flash partition mapped into its address space; the virtual
board (unix port) reads it into a buffer, which ``firmware/update_boot.py``
mounts the same way.

The image is written with mpremote's own ROMFS writer (``mpremote romfs
build`` uses the same class), from a device-image folder (``tools.image``):
every ``.mpy`` file goes in, the flash-root files (``main.py``, the boot
stub, the manifest) stay out: they choose and mount the image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from mpremote.romfs import VfsRomWriter

FLASH_ROOT_FILES = frozenset({"main.py", "update_boot.py", "sim_rom.mpy", "manifest.json", "rom.img"})
"""Files of an image folder that live on the node's flash root, not in its ROMFS image."""


def build_romfs(image: Path) -> bytes:
    """The ROMFS image of the device-image folder ``image`` (its compiled modules, folders as they are)."""
    writer = VfsRomWriter()

    def add(folder: Path) -> None:
        for path in sorted(folder.iterdir()):
            if path.is_dir():
                writer.opendir(path.name)
                add(path)
                writer.closedir()
            elif not (folder == image and path.name in FLASH_ROOT_FILES):
                writer.mkfile(path.name, path.read_bytes())

    add(image)
    data: bytes = writer.finalise()
    return data


def digest(data: bytes) -> str:
    """SHA-256 of an image, hex."""
    return hashlib.sha256(data).hexdigest()
