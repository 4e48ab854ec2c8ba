"""A filesystem that loses power: what was not fsynced is gone after the cut.

A FUSE passthrough (``mfusepy``, libfuse 3) over a *backing* folder, which
plays the disk. Written data is kept in memory, per file, like the kernel's
page cache, and reaches the backing file only when the file is fsynced
(``fsync`` or ``fdatasync``). A *power cut* discards everything not synced
and, optionally, *tears* the last unsynced write: a random prefix of its
512-byte sectors reaches the disk, the rest does not (the disk was writing it
when the power went). The backing folder then holds exactly what survived; a
new mount on it is the machine powered on again.

Model. Data is volatile until its file is synced; metadata (create, unlink,
rename, mkdir) is durable at once, as on a journaling filesystem that
committed its journal (SQLite never relies on either way: it fsyncs data
and, where it matters, the directory). Reads see the unsynced data, as a
process does through the page cache. Writes reach the daemon one by one (no
writeback cache in the kernel), so when the writing process has been
SIGKILLed every write it made is here: cutting then is cutting at the moment
of the kill.

Run it as a process and drive it through its standard input
(:class:`tools.sim.power_cut_mount.PowerCutMount` does)::

    fs = PowerCutMount(backing, mountpoint).start()   # python -m tools.sim.power_cut_fs BACKING MOUNT
    ...                                               # processes use files under mountpoint
    report = fs.cut(tear=True, image=snapshot_dir)    # the power goes; image: the page cache as it was
    fs = PowerCutMount(backing, mountpoint).start()   # power back: what survived

``fs.stop()`` is an orderly shutdown: everything is synced, then unmounted.
Needs /dev/fuse, ``fusermount3`` (Debian ``fuse3``) and root or ``user_allow_other``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import random
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BLOCK = 4096  # unit of the in-memory page cache
SECTOR = 512  # what a disk writes atomically: the unit of a torn write


@dataclass
class _Dirty:
    """Unsynced state of one file: whole blocks as the file's view has them, and the logical size."""

    size: int
    floor: int  # below this the backing file still holds the view's bytes (truncations lower it)
    blocks: dict[int, bytearray] = field(default_factory=dict)


class PowerCutFS:
    """The filesystem's operations (as ``mfusepy`` calls them); every call runs under one lock."""

    def __init__(self, backing: Path, *, seed: int | None = None) -> None:
        self.backing = backing
        self.use_ns = True  # utimens gets nanoseconds (mfusepy)
        self._mutex = threading.Lock()
        self.dirty: dict[str, _Dirty] = {}
        self.last_write: tuple[str, int, bytes] | None = None  # path, offset, data of the newest write
        self.synced_bytes = 0
        self.syncs = 0
        self.cut_done = False
        self.rng = random.Random(seed)

    # -- helpers ------------------------------------------------------------------------------------------------

    def _real(self, path: str) -> Path:
        return self.backing / path.lstrip("/")

    def _backing_size(self, path: str) -> int:
        return self._real(path).stat().st_size

    def _dirt(self, path: str) -> _Dirty:
        d = self.dirty.get(path)
        if d is None:
            size = self._backing_size(path)
            d = self.dirty[path] = _Dirty(size=size, floor=size)
        return d

    def _block(self, path: str, d: _Dirty, index: int) -> bytearray:
        """Block ``index`` of the view, loaded from the backing file where it still holds the view."""
        b = d.blocks.get(index)
        if b is None:
            start = index * BLOCK
            b = bytearray(BLOCK)
            keep = max(0, min(BLOCK, d.floor - start))
            if keep:
                with self._real(path).open("rb") as f:
                    f.seek(start)
                    data = f.read(keep)
                b[: len(data)] = data
            d.blocks[index] = b
        return b

    def view(self, path: str, size: int, offset: int) -> bytes:
        """Bytes of the file as processes see them (backing file with the unsynced blocks over it)."""
        d = self.dirty.get(path)
        if d is None:
            with self._real(path).open("rb") as f:
                f.seek(offset)
                return f.read(size)
        end = min(offset + size, d.size)
        out = bytearray()
        pos = offset
        while pos < end:
            index, within = divmod(pos, BLOCK)
            n = min(BLOCK - within, end - pos)
            b = d.blocks.get(index)
            if b is not None:
                out += b[within : within + n]
            else:
                keep = max(0, min(n, d.floor - pos))
                if keep:
                    with self._real(path).open("rb") as f:
                        f.seek(pos)
                        out += f.read(keep).ljust(keep, b"\0")
                out += bytes(n - keep)
            pos += n
        return bytes(out)

    def _apply(self, path: str, d: _Dirty) -> int:
        """Write a file's unsynced state to the backing file (the sync reached the disk); bytes written."""
        real = self._real(path)
        written = 0
        with real.open("r+b") as f:
            f.truncate(d.floor)
            f.truncate(d.size)  # what lies between floor and size is zeros unless a block says otherwise
            for index, b in sorted(d.blocks.items()):
                start = index * BLOCK
                if start >= d.size:
                    continue
                f.seek(start)
                f.write(b[: d.size - start])
                written += min(BLOCK, d.size - start)
        return written

    # -- file operations ----------------------------------------------------------------------------------------

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        with self._mutex:
            try:
                st = os.lstat(self._real(path))
            except FileNotFoundError:
                raise _err(errno.ENOENT) from None
            attrs = {k: getattr(st, k) for k in (
                "st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")}
            d = self.dirty.get(path)
            if d is not None:
                attrs["st_size"] = d.size
            return attrs

    def readdir(self, path: str, fh: int) -> list[str]:
        with self._mutex:
            return [".", "..", *(p.name for p in self._real(path).iterdir())]

    def access(self, path: str, amode: int) -> int:
        if not self._real(path).exists():
            raise _err(errno.ENOENT)
        return 0

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            self._check_alive()
            if not self._real(path).exists():
                raise _err(errno.ENOENT)
            if flags & os.O_TRUNC:
                self._truncate(path, 0)
            return 0

    def create(self, path: str, mode: int, fi: object = None) -> int:
        with self._mutex:
            self._check_alive()
            fd = os.open(self._real(path), os.O_WRONLY | os.O_CREAT, mode)
            os.close(fd)
            return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            return self.view(path, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        with self._mutex:
            self._check_alive()
            d = self._dirt(path)
            pos, end = offset, offset + len(data)
            while pos < end:
                index, within = divmod(pos, BLOCK)
                n = min(BLOCK - within, end - pos)
                self._block(path, d, index)[within : within + n] = data[pos - offset : pos - offset + n]
                pos += n
            d.size = max(d.size, end)
            self.last_write = (path, offset, bytes(data))
            return len(data)

    def _truncate(self, path: str, length: int) -> None:
        d = self._dirt(path)
        if length < d.size:
            last = length // BLOCK
            for index in [i for i in d.blocks if i > last]:
                del d.blocks[index]
            if length % BLOCK:
                b = self._block(path, d, last)
                b[length % BLOCK :] = bytes(BLOCK - length % BLOCK)
            else:
                d.blocks.pop(last, None)
            d.floor = min(d.floor, length)
        d.size = length

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        with self._mutex:
            self._check_alive()
            self._truncate(path, length)
            return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        with self._mutex:
            self._check_alive()
            d = self.dirty.pop(path, None)
            if d is not None:
                self.synced_bytes += self._apply(path, d)
            if self.last_write is not None and self.last_write[0] == path:
                self.last_write = None
            self.syncs += 1
            return 0

    def fsyncdir(self, path: str, datasync: int, fh: int) -> int:
        return 0  # metadata is durable at once in this model

    def flush(self, path: str, fh: int) -> int:
        return 0  # close() is no sync

    def release(self, path: str, fh: int) -> int:
        return 0

    def unlink(self, path: str) -> int:
        with self._mutex:
            self._check_alive()
            self.dirty.pop(path, None)
            self._real(path).unlink()
            return 0

    def rename(self, old: str, new: str) -> int:
        with self._mutex:
            self._check_alive()
            self._real(old).rename(self._real(new))
            self.dirty.pop(new, None)
            if old in self.dirty:
                self.dirty[new] = self.dirty.pop(old)
            return 0

    def mkdir(self, path: str, mode: int) -> int:
        self._real(path).mkdir(mode)
        return 0

    def rmdir(self, path: str) -> int:
        self._real(path).rmdir()
        return 0

    def chmod(self, path: str, mode: int) -> int:
        self._real(path).chmod(mode)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._real(path), uid, gid)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._real(path))
        else:
            os.utime(self._real(path), ns=times)
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(self.backing)
        return {k: getattr(st, k) for k in (
            "f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_namemax")}

    def destroy(self, path: str) -> None:
        """Unmounted: an orderly shutdown syncs everything; after a cut there is nothing left to sync."""
        with self._mutex:
            if not self.cut_done:
                for p, d in list(self.dirty.items()):
                    self._apply(p, d)
                self.dirty.clear()

    # -- the power cut ------------------------------------------------------------------------------------------

    def _check_alive(self) -> None:
        if self.cut_done:
            raise _err(errno.EIO)

    def cut(self, *, tear: bool, image: str = "") -> dict[str, Any]:
        """Lose what was not synced (tear the newest write if asked); first copy the page-cache view to ``image``."""
        with self._mutex:
            if image:
                self._image(Path(image))
            report: dict[str, Any] = {
                "unsynced": {p.lstrip("/"): len(d.blocks) * BLOCK for p, d in self.dirty.items() if d.blocks},
                "syncs": self.syncs, "synced_bytes": self.synced_bytes, "torn_sectors": None,
            }
            if tear and self.last_write is not None and self.last_write[0] in self.dirty:
                path, offset, data = self.last_write
                first = -(-offset // SECTOR) * SECTOR  # sectors wholly inside the write
                sectors = max(0, (offset + len(data)) // SECTOR - first // SECTOR)
                keep = self.rng.randint(0, sectors)
                if keep:
                    with self._real(path).open("r+b") as f:
                        f.seek(first)
                        f.write(data[first - offset : first - offset + keep * SECTOR])
                report["torn_sectors"] = [keep, sectors]
            self.dirty.clear()
            self.cut_done = True
            return report

    def _image(self, dest: Path) -> None:
        """Copy every file as processes saw it (synced or not) to ``dest``."""
        for folder, _dirs, files in os.walk(self.backing):
            rel = os.path.relpath(folder, self.backing)
            (dest / rel).mkdir(parents=True, exist_ok=True)
            for name in files:
                path = "/" + str(Path(rel, name)).removeprefix("./")
                d = self.dirty.get(path)
                size = d.size if d is not None else self._backing_size(path)
                (dest / rel / name).write_bytes(self.view(path, size, 0))


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


# -- running it ---------------------------------------------------------------------------------------------------


def serve(backing: Path, mountpoint: Path, *, seed: int | None = None) -> None:
    """Mount and serve until unmounted; commands on stdin: ``cut [tear] [IMAGE]`` (answered on stdout)."""
    import mfusepy

    ops = PowerCutFS(backing, seed=seed)

    def control() -> None:
        for line in sys.stdin:
            words = line.split()
            if words and words[0] == "cut":
                image = next((w for w in words[1:] if w != "tear"), "")
                report = ops.cut(tear="tear" in words, image=image)
                print(json.dumps(report), flush=True)

    threading.Thread(target=control, daemon=True).start()
    mfusepy.FUSE(ops, str(mountpoint), foreground=True, nothreads=False, allow_other=True,
                 default_permissions=True, max_threads=8, attr_timeout=0.0, entry_timeout=0.0, negative_timeout=0.0)


def main(argv: list[str] | None = None) -> None:
    """``python -m tools.sim.power_cut_fs BACKING MOUNTPOINT [--seed N]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("backing", type=Path)
    p.add_argument("mountpoint", type=Path)
    p.add_argument("--seed", type=int)
    a = p.parse_args(argv)
    serve(a.backing.resolve(), a.mountpoint.resolve(), seed=a.seed)


if __name__ == "__main__":
    main()
