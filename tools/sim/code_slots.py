"""A virtual board's code slots, seen from the host: the files ``firmware/update_boot.py`` reads.

A node's flash folder holds ``rom/slot0.img`` and ``rom/slot1.img`` (ROMFS
images) and ``rom/state.json`` (``{"active", "trial", "tries", "previous",
"rolled_back"}``). The node changes them itself (``firmware/update.py``);
the host only installs the first image on a blank board and reads them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE = "rom/state.json"


def slot_path(flash: Path, slot: int) -> Path:
    """The file of code slot ``slot`` on the board whose flash folder is ``flash``."""
    return flash / "rom" / f"slot{slot}.img"


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
    slot_path(flash, 0).write_bytes(image)
    tmp = flash / (STATE + ".tmp")
    tmp.write_text(json.dumps({"active": 0, "trial": False, "tries": 0}))
    tmp.replace(flash / STATE)  # the state last: a board cut short here has no slots, and is set up again
    return True


def active_slot_bytes(flash: Path) -> int:
    """Size of the image in the board's active slot (0 without slots)."""
    state = read_state(flash)
    if state is None:
        return 0
    return slot_path(flash, int(state["active"])).stat().st_size
