"""The schedule's memory on the node: import and per-minute evaluation within budget (unix port)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from tools.sim.street import micropython_path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
HEAPSIZE = "128K"


def test_schedule_import_and_evaluation_fit_the_node() -> None:
    """Importing astro + schedule and a minute's evaluation stay small on the unix port (64-bit: ESP32 is ~half)."""
    script = (
        "import gc\n"
        "gc.collect(); a = gc.mem_alloc()\n"
        "from firmware import astro, schedule as S\n"
        "gc.collect(); b = gc.mem_alloc()\n"
        "P = [[[S.SUNSET, 0, 100], [S.FIXED, 1380, 50], [S.FIXED, 300, 100], [S.SUNRISE, 0, 0]]]\n"
        "now = astro.days_from_civil(2025, 1, 15) * 86400\n"
        "S.level_at(now, 60, 52.37, 4.9, {'default': 0}, P)\n"
        "gc.collect(); c = gc.mem_alloc(); gc.disable()\n"
        "r = S.level_at(now + 60, 60, 52.37, 4.9, {'default': 0}, P)\n"
        "d = gc.mem_alloc(); gc.enable()\n"
        "print('import', b - a, 'minute', d - c, r)\n"
    )
    env = dict(os.environ, MICROPYPATH=str(ROOT))
    proc = subprocess.run(
        [micropython_path(), "-X", f"heapsize={HEAPSIZE}", "-c", script],
        capture_output=True, text=True, timeout=120, env=env, cwd=HERE, check=False,
    )
    match = re.search(r"^import (\d+) minute (\d+) \(50, 0\)$", proc.stdout, re.M)  # 01:00 local: dimmed
    assert match, proc.stdout + proc.stderr
    assert int(match.group(1)) < 24 * 1024  # measured ~18 KB
    assert int(match.group(2)) < 12 * 1024  # garbage of one evaluation, sun times cached: measured ~7 KB
