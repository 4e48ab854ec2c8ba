"""A virtual board's code slots, seen from the host: what ``firmware/update_boot.py`` reads.

A node whose image carries ``sim_rom.mpy`` (every image of the virtual board)
keeps its slots in two ROM partitions, ``rom/part0.bin`` and ``rom/part1.bin``
(``boards/sim/rom_partitions.py``: the bytes past a file's end are erased flash);
an older node in ``rom/slot0.img`` and ``rom/slot1.img``. ``rom/state.json``
(``{"active", "trial", "tries", "previous", "rolled_back"}``) says which slot
runs. The node changes them itself (``firmware/update.py``); the host only
installs the first image on a blank board and reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE = "rom/state.json"
SIM_ROM = "sim_rom.mpy"
ROMFS_MAGIC = b"\xd2\xcd\x31"


def has_partitions(flash: Path) -> bool:
    """Whether the board keeps its code slots in ROM partitions (its flash root has the partitions' driver)."""
    return (flash / SIM_ROM).is_file()


def slot_path(flash: Path, slot: int) -> Path:
    """The file of code slot ``slot`` (its ROM partition's file on a board with partitions)."""
    return flash / "rom" / (f"part{slot}.bin" if has_partitions(flash) else f"slot{slot}.img")


def romfs_bytes(data: bytes) -> int:
    """Length of the ROMFS image at the start of ``data`` (mpremote's header: magic, then a varuint); 0 if none."""
    if not data.startswith(ROMFS_MAGIC):
        return 0
    size = 0
    for i in range(len(ROMFS_MAGIC), min(len(data), 12)):
        size = (size << 7) | (data[i] & 0x7F)
        if not data[i] & 0x80:
            return i + 1 + size
    return 0


def slot_image(flash: Path, slot: int) -> bytes:
    """The ROMFS image in code slot ``slot`` (empty if it holds none)."""
    try:
        data = slot_path(flash, slot).read_bytes()
    except OSError:
        return b""
    return data[:romfs_bytes(data)] if has_partitions(flash) else data


def read_state(flash: Path) -> dict[str, Any] | None:
    """The board's slot state, or None if it has none (or an unreadable one)."""
    try:
        state = json.loads((flash / STATE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("active") in (0, 1) else None


def install_first_slot(flash: Path, image: bytes) -> bool:
    """Put ``image`` in slot 0 and make it active, unless the board already has slots; True if it did."""
    if read_state(flash) is not None:
        return False
    (flash / "rom").mkdir(parents=True, exist_ok=True)
    slot_path(flash, 0).write_bytes(image)  # a partition: the rest of it is erased flash
    tmp = flash / (STATE + ".tmp")
    tmp.write_text(json.dumps({"active": 0, "trial": False, "tries": 0}))
    tmp.replace(flash / STATE)  # the state last: a board cut short here has no slots, and is set up again
    return True


def active_slot_bytes(flash: Path) -> int:
    """Size of the image in the board's active slot (0 without slots)."""
    state = read_state(flash)
    if state is None:
        return 0
    return len(slot_image(flash, int(state["active"])))
