"""Run ``streetedge run`` with tracemalloc on, and write where Python memory grew every few seconds.

For finding a creep that ``streetedge bench soak`` shows (``--trace`` there runs
the gateway through this module)::

    python -m tools.bench.memtrace --every 60 --out growth.txt -- -c gateway.toml

Every ``--every`` seconds the report in ``--out`` is rewritten: the traced
total, SQLite's own heap (``sqlite3_memory_used``, not seen by tracemalloc),
and the allocation sites that grew most since the first snapshot (taken after
``--baseline`` seconds), with their tracebacks. Tracing costs CPU and memory
of its own: use it to find the site, and the soak without it for the figure.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import linecache
import threading
import time
import tracemalloc
from pathlib import Path

FRAMES = 12
"""Frames kept per allocation: enough to see which gateway code called into a library."""


def sqlite_memory_used() -> int:
    """Bytes SQLite holds in its own heap now (page caches, statements), or -1 if the library is not found."""
    name = ctypes.util.find_library("sqlite3")
    if name is None:
        return -1
    lib = ctypes.CDLL(name)  # the library the sqlite3 module loaded: same process, same counters
    lib.sqlite3_memory_used.restype = ctypes.c_int64
    return int(lib.sqlite3_memory_used())


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_figures() -> dict[str, int]:
    """glibc's view of its heap (``mallinfo2``): bytes in use, bytes free but kept, bytes in mmapped blocks.

    Memory that grows as "free but kept" is fragmentation, not a leak of objects; empty on other C libraries.
    """
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except AttributeError:
        return {}
    fn.restype = _MallInfo2
    info = fn()
    return {"in_use": info.uordblks, "free_kept": info.fordblks, "mmapped": info.hblkhd}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def growth_report(base: tracemalloc.Snapshot, now: tracemalloc.Snapshot, top: int = 15) -> str:
    """The ``top`` allocation sites (by traceback) that grew most from ``base`` to ``now``."""
    # The report's own reading of source lines (linecache) is not the gateway's.
    keep = (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, linecache.__file__))
    stats = now.filter_traces(keep).compare_to(base.filter_traces(keep), "traceback")
    lines = []
    for stat in stats[:top]:
        lines.append(f"{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks "
                     f"(now {stat.size / 1024:.1f} KiB, {stat.count} blocks)")
        lines += ["    " + line for line in stat.traceback.format(limit=FRAMES)]
    return "\n".join(lines)


def _watch(out: Path, every: float, baseline: float) -> None:
    time.sleep(baseline)
    base = tracemalloc.take_snapshot()
    started = time.monotonic()
    history: list[str] = []
    while True:
        time.sleep(every)
        now = tracemalloc.take_snapshot()
        traced, _ = tracemalloc.get_traced_memory()
        heap = malloc_figures()
        history.append(
            f"{time.monotonic() - started:6.0f} s: RSS {_rss_mb():.2f} MB, traced {traced / 1e6:.2f} MB, "
            f"sqlite3 {sqlite_memory_used() / 1e6:.2f} MB, malloc "
            + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in heap.items())
        )
        tmp = out.with_suffix(".tmp")
        tmp.write_text("\n".join(history) + "\n\nGrowth since the baseline:\n" + growth_report(base, now) + "\n")
        tmp.replace(out)


def main(argv: list[str] | None = None) -> None:
    """Start tracing and the reporting thread, then run the gateway with the remaining arguments."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=float, default=60.0, help="seconds between two reports")
    parser.add_argument("--baseline", type=float, default=120.0, help="seconds before the reference snapshot")
    parser.add_argument("--out", required=True, help="report file (rewritten each time)")
    parser.add_argument("run", nargs=argparse.REMAINDER, help="arguments of streetedge run (after --)")
    args = parser.parse_args(argv)
    tracemalloc.start(FRAMES)
    threading.Thread(target=_watch, args=(Path(args.out), args.every, args.baseline), daemon=True,
                     name="memtrace").start()
    from tools.cli import main as cli_main  # imported after tracing starts, so its allocations are seen

    run_args = [a for a in args.run if a != "--"]
    raise SystemExit(cli_main(["run", *run_args]))


if __name__ == "__main__":
    main()
