"""A lamp's names in RAM: its modules leave room under the qstr pools' 640-entry step (7 KB at once)."""

from __future__ import annotations

from pathlib import Path

from tools.bench.rom_imports import measure

# The pools of 20 to 320 entries hold 620 names; a running lamp adds about 33 to what its modules intern at
# import (612 against 579, 2026-12-06: the boot stub's and the ROM partitions' names, the flash folder's paths, a
# command's code), counted with micropython.qstr_info(1) in a node of `streetedge bench node`; see
# docs/performance.md, "Why the meter and the environment node fell".
POOLS_BEFORE_THE_STEP = 620
RUNNING_NODE_ADDS = 33


def test_lamp_modules_leave_room_for_a_running_node_under_the_pools_step(tmp_path: Path) -> None:
    """Every module a lamp imports (its settings rules and night plan included), from its ROMFS image."""
    rows = measure("lamp", tmp_path, rom=True)
    modules = [r["module"] for r in rows]
    assert {"protocols.program_rules", "firmware.night_plan"} <= set(modules), modules
    names = rows[-1]["qstrs"]
    assert names + RUNNING_NODE_ADDS <= POOLS_BEFORE_THE_STEP, rows[-1]
    assert rows[-1]["pools"] == 5, rows[-1]  # 20 + 40 + 80 + 160 + 320 entries: no 640-entry pool
