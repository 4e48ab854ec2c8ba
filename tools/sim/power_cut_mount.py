"""Driving the power-cut filesystem (:mod:`tools.sim.power_cut_fs`) from a test: mount, cut, power on again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


class PowerCutMount:
    """One power-on of the filesystem: :mod:`tools.sim.power_cut_fs` in a process of its own."""

    def __init__(self, backing: Path, mountpoint: Path, *, seed: int | None = None) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.seed = seed
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> PowerCutMount:
        """Mount (the backing folder's content is what the machine finds at power-on)."""
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "tools.sim.power_cut_fs", str(self.backing), str(self.mountpoint)]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=Path(__file__).resolve().parents[2])
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mountpoint):
            if self.proc.poll() is not None:
                raise RuntimeError(f"power_cut_fs exited with {self.proc.returncode} before mounting")
            if time.monotonic() > deadline:
                self._kill()
                raise TimeoutError(f"{self.mountpoint} not mounted in {timeout} s")
            time.sleep(0.02)
        return self

    def cut(self, *, tear: bool = False, image: Path | None = None) -> dict[str, Any]:
        """Cut the power: unsynced data is lost; the report says how much was pending. Unmounts.

        Stop (SIGKILL) the processes that write here first: their writes are all in, and nothing
        they do after the cut can reach the disk. ``image``: a folder that receives the files as
        processes saw them at the cut (what a process crash would have left).
        """
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        command = "cut" + (" tear" if tear else "") + (f" {image}" if image else "")
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        report: dict[str, Any] = json.loads(self.proc.stdout.readline())
        self._unmount()
        return report

    def stop(self) -> None:
        """Orderly shutdown: everything is synced to the backing folder, then unmounted."""
        if self.proc is not None and self.proc.poll() is None:
            self._unmount()

    def _unmount(self) -> None:
        assert self.proc is not None
        unmount = ["fusermount3", "-u", "-z", str(self.mountpoint)]
        for _ in range(100):
            if subprocess.run(unmount, capture_output=True, check=False).returncode == 0:
                break
            time.sleep(0.1)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self._kill()
        self.proc = None

    def _kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], capture_output=True, check=False)

    def __enter__(self) -> PowerCutMount:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def available() -> str:
    """Empty if a power-cut filesystem can be mounted here, else why not."""
    if not Path("/dev/fuse").exists():
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "fusermount3 missing (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:
        return f"mfusepy unusable ({exc})"
    return ""
