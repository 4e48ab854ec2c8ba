"""The virtual board: its copies of the contract's numbers, and the lamp's physics built only for a lamp."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from boards import sim
from protocols.roles import common
from tools.sim.street import REPO, micropython_path


def test_reset_causes_are_the_common_tables_numbers() -> None:
    """The board reports ``protocols.roles.common.BOOT_*`` without importing the table (node RAM)."""
    assert (sim._BOOT_POWER_ON, sim._BOOT_WATCHDOG, sim._BOOT_OTHER) == (
        common.BOOT_POWER_ON, common.BOOT_WATCHDOG, common.BOOT_OTHER)


def _run(flash: Path, script: str) -> list[str]:
    proc = subprocess.run([micropython_path(), "-X", "heapsize=128K", "-c", script], cwd=flash,
                          env={**os.environ, "MICROPYPATH": f"{REPO}:.frozen"}, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.split()


def test_reset_cause_comes_from_the_wiring(tmp_path: Path) -> None:
    for cause, expected in ((None, common.BOOT_POWER_ON), ("watchdog", common.BOOT_WATCHDOG),
                            ("other", common.BOOT_OTHER)):
        (tmp_path / "sim.json").write_text(json.dumps({"reset_cause": cause} if cause else {}))
        assert _run(tmp_path, "import boards.sim as s\nprint(s.Board().reset_cause())") == [str(expected)]


def test_a_node_that_never_drives_a_lamp_has_no_lamp_in_its_world(tmp_path: Path) -> None:
    """A meter or environment node writes no lamp keys; a lamp appears, with its fault, once driven."""
    (tmp_path / "sim.json").write_text(json.dumps({"fault": "relay"}))
    out = _run(tmp_path, (
        "import json, sys, boards.sim as s\n"
        "b = s.Board()\n"
        "b.write_world()\n"
        "w = json.load(open('world.json'))\n"
        "print('light' in w, 'lux' in w, 'lamp_parts' in ''.join(sys.modules))\n"
        "b.relay(False)\n"  # a welded relay stays closed: the fault of sim.json applies to the lamp built now
        "b.dimmer(100)\n"
        "b.write_world()\n"
        "w = json.load(open('world.json'))\n"
        "print(w['relay'], w['level'])\n"
    ))
    assert out == ["False", "True", "False", "True", "1.0"]  # level: 0..1
