"""Benchmarks: figures measured as ratios against a floor in the same run, written to docs/.

Shared by the benches: :func:`cpu_seconds` (a process's CPU time from /proc)
and :func:`record` (a bench's block in docs/performance.md, between markers
named after the bench, so a rerun replaces exactly its own figures).
"""

from __future__ import annotations

import os
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
"""The page the benches write their figures to."""
_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime


def record(bench: str, heading: str, command: str, text: str, docs: Path = DOCS) -> None:
    """Put ``text`` (with the command that made it) between the markers of ``bench`` in ``docs``.

    A first run appends a section titled ``heading``; later runs replace the block in place.
    """
    begin, end = f"<!-- {bench}: begin -->", f"<!-- {bench}: end -->"
    block = f"{begin}\nCommand: `{command}`\n\n{text}\n{end}"
    page = docs.read_text() if docs.exists() else "# Performance\n"
    if begin in page:
        head, rest = page.split(begin, 1)
        page = head + block + rest.split(end, 1)[1]
    else:
        page = page.rstrip("\n") + f"\n\n## {heading}\n\n{block}\n"
    docs.write_text(page)
