"""The in-process fuzz of the lamp's slave at length (``-m slow``): 50,000 frames on each interpreter."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from test_lamp_fuzz import run_fuzz

from tools.sim.street import micropython_path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
FRAMES = 50_000


@pytest.fixture(autouse=True)
def _slow_only(request: pytest.FixtureRequest) -> None:
    if "slow" not in (request.config.getoption("-m") or ""):
        pytest.skip("50,000 frames: run with -m slow")


@pytest.mark.slow
def test_long_fuzz_on_cpython() -> None:
    """Another seed, 50,000 frames."""
    stats = run_fuzz(FRAMES, 7)
    assert stats["answered"] > FRAMES // 8


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_long_fuzz_on_micropython_at_128k() -> None:
    """The same on the unix port, at the ESP32 heap budget."""
    env = dict(os.environ, FUZZ_FRAMES=str(FRAMES),
               MICROPYPATH=os.pathsep.join(map(str, (ROOT, HERE, ROOT / "tests" / "protocols"))))
    proc = subprocess.run(
        [micropython_path(), "-X", "heapsize=128K", str(ROOT / "tests" / "mpy_run.py"), "test_lamp_fuzz"],
        capture_output=True, text=True, timeout=1800, env=env, cwd=HERE, check=False,
    )
    out = proc.stdout + proc.stderr
    assert re.search(r"^2 passed, 0 failed$", out, re.M), out[-3000:]
