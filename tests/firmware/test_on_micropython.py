"""Run the common-subset firmware tests again under the MicroPython unix port, ESP32 heap budget.

One process per module, as in tests/protocols/test_on_micropython.py (whose
executable finder this reuses). Only modules whose first line is
``# common-subset`` run here: the other firmware tests drive whole nodes from
CPython.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
HEAPSIZE = "128K"
MODULES = sorted(
    p.stem for p in HERE.glob("test_*.py") if p.read_text().startswith("# common-subset")
)


def _protocols_helper() -> Callable[[], str]:
    """``micropython()`` from tests/protocols/test_on_micropython.py, loaded by path (same module name here)."""
    path = ROOT / "tests" / "protocols" / "test_on_micropython.py"
    spec = importlib.util.spec_from_file_location("_protocols_on_micropython", path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    finder: Callable[[], str] = mod.micropython
    return finder


micropython = _protocols_helper()


def test_common_subset_modules_exist() -> None:
    """The firmware tests that must also pass on MicroPython are found."""
    assert {"test_astro", "test_schedule"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_passes_on_micropython(module: str) -> None:
    """Every test function of the module passes on MicroPython with a 128K heap."""
    path = os.pathsep.join(str(p) for p in (ROOT, HERE, ROOT / "tests" / "protocols"))
    env = dict(os.environ, MICROPYPATH=path)
    proc = subprocess.run(
        [micropython(), "-X", f"heapsize={HEAPSIZE}", str(ROOT / "tests" / "mpy_run.py"), module],
        capture_output=True, text=True, timeout=600, env=env, cwd=HERE, check=False,
    )
    out = proc.stdout + proc.stderr
    match = re.search(r"^(\d+) passed, (\d+) failed$", out, re.M)
    assert match, out[-3000:]
    assert int(match.group(2)) == 0, out[-6000:]
    assert int(match.group(1)) > 0, out
    assert proc.returncode == 0, out[-3000:]


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
        [micropython(), "-X", f"heapsize={HEAPSIZE}", "-c", script],
        capture_output=True, text=True, timeout=120, env=env, cwd=HERE, check=False,
    )
    match = re.search(r"^import (\d+) minute (\d+) \(50, 0\)$", proc.stdout, re.M)  # 01:00 local: dimmed
    assert match, proc.stdout + proc.stderr
    assert int(match.group(1)) < 24 * 1024  # measured ~18 KB
    assert int(match.group(2)) < 12 * 1024  # garbage of one evaluation, sun times cached: measured ~7 KB
