"""Run every common-subset test module again under the MicroPython unix port, at the ESP32 heap budget.

A test module whose first line is ``# common-subset`` (in tests/protocols and
tests/firmware) runs under pytest on CPython and here, one MicroPython process
per module, so that each must fit the budget on its own, as a node that imports
only what its role needs.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tools.sim.street import micropython_path

TESTS = Path(__file__).parent
ROOT = TESTS.parent
HEAPSIZE = "128K"
FOLDERS = (TESTS / "protocols", TESTS / "firmware")
MODULES = sorted(
    (p.parent.name, p.stem)
    for folder in FOLDERS
    for p in folder.glob("test_*.py")
    if p.read_text().startswith("# common-subset")
)


def test_common_subset_modules_exist() -> None:
    """The modules that must also pass on MicroPython are found in both folders."""
    names = {stem for _, stem in MODULES}
    assert {"test_cbor", "test_senml", "test_regmap", "test_astro", "test_schedule"} <= names


@pytest.mark.parametrize(("folder", "module"), MODULES, ids=[f"{f}/{m}" for f, m in MODULES])
def test_module_passes_on_micropython(folder: str, module: str) -> None:
    """Every test function of the module passes on MicroPython with a 128K heap."""
    here = TESTS / folder
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(map(str, (ROOT, here, TESTS / "protocols"))))
    proc = subprocess.run(
        [micropython_path(), "-X", f"heapsize={HEAPSIZE}", str(TESTS / "mpy_run.py"), module],
        capture_output=True, text=True, timeout=600, env=env, cwd=here, check=False,
    )
    out = proc.stdout + proc.stderr
    match = re.search(r"^(\d+) passed, (\d+) failed$", out, re.M)
    assert match, out[-3000:]
    assert int(match.group(2)) == 0, out[-6000:]
    assert int(match.group(1)) > 0, out
    assert proc.returncode == 0, out[-3000:]
