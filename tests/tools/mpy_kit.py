"""Run rewritten image sources on the unix port: the proof that a build step keeps a module's meaning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tools.image import mpy_cross_path


def run_compiled(sources: dict[str, str], probe: str, work: Path) -> subprocess.CompletedProcess[str]:
    """Compile ``sources`` with mpy-cross (only the .mpy files left) and run ``probe`` on the unix port."""
    for rel, text in sources.items():
        src = work / rel
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(text)
        subprocess.run([mpy_cross_path(), "-o", str(src.with_suffix(".mpy")), str(src)], check=True)
        src.unlink()
    result = subprocess.run([str(Path(sys.executable).parent / "micropython"), "-c", probe], cwd=work,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result
