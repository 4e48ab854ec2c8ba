# The virtual board's ROM partitions: what vfs.rom_ioctl gives on an ESP32, for the unix port that lacks it.
#
# Installed on a virtual node's flash root as sim_rom.mpy (tools/image.py): the boot stub and the updater
# import it only where vfs has no rom_ioctl. Partition n (SIZE bytes) is the file rom/part<n>.bin; the
# bytes past the file's end are erased flash (0xFF), so a blank partition is a missing file.
# rom_ioctl(1) is the number of partitions, rom_ioctl(2, n) the partition object, as on the ESP32 port
# (an esp32.Partition: ioctl 4 = block count, 5 = block size, 6 = erase a block; readblocks and
# writeblocks(block, buf, offset)). It behaves like NOR flash so that the firmware's mistakes show:
# - an erase sets a whole 4096-byte block to 0xFF, in several steps: a power cut (SIGKILL) in the middle
#   leaves a block half erased, as a cut erase leaves a chip's sector;
# - a write clears bits only (new = old AND data): writing over bytes that were not erased corrupts them,
#   so an updater that forgets an erase fails its hash check here as on a chip;
# - writes must start at a multiple of 4 bytes and be a multiple of 4 long (the ESP32's minimum write),
#   else OSError(EINVAL);
# - a write is done 64 bytes at a time, so a power cut leaves it torn (the unix port's files are unbuffered:
#   a SIGKILL keeps every write made before it).
import os

_BLOCK = 4096
_STEP = 64  # bytes written at once: a power cut tears a longer write
_ERASE_STEPS = 4
_EINVAL = 22
_PARTS = 2
SIZE = 256 * 1024  # bytes of each partition


def path(n):
    return "rom/part%d.bin" % n


class Partition:
    """ROM partition ``n``: the block-device protocol of the ESP32 port's ``esp32.Partition``."""

    def __init__(self, n):
        self.n = n
        self.path = path(n)
        self.size = SIZE

    def ioctl(self, op, arg):
        if op == 4:
            return self.size // _BLOCK
        if op == 5:
            return _BLOCK
        if op == 6:
            self._erase(arg)
            return 0
        return None

    def _check(self, block, buf_len, offset):
        start = block * _BLOCK + offset
        if block < 0 or offset < 0 or start + buf_len > self.size:
            raise OSError(_EINVAL)
        return start

    def _open(self, start):
        # The file as far as ``start``: what lies past its end is erased, 0xFF
        try:
            have = os.stat(self.path)[6]
        except OSError:
            have = 0
            open(self.path, "wb").close()
        if have < start:
            with open(self.path, "ab") as f:
                f.write(b"\xff" * (start - have))
        return open(self.path, "r+b")

    def _erase(self, block):
        start = self._check(block, _BLOCK, 0)
        piece = b"\xff" * (_BLOCK // _ERASE_STEPS)
        with self._open(start) as f:
            for i in range(_ERASE_STEPS):
                f.seek(start + i * len(piece))
                f.write(piece)

    def readblocks(self, block, buf, offset=0):
        start = self._check(block, len(buf), offset)
        got = 0
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                got = f.readinto(buf) or 0
        except OSError:
            pass
        for i in range(got, len(buf)):  # past the file's end: erased
            buf[i] = 0xFF

    def writeblocks(self, block, buf, offset=None):
        """Program ``buf`` at ``offset`` in ``block`` (bits only cleared); without ``offset`` erase first."""
        if offset is None:
            for b in range(block, block + (len(buf) + _BLOCK - 1) // _BLOCK):
                self._erase(b)
            offset = 0
        start = self._check(block, len(buf), offset)
        if start % 4 or len(buf) % 4:
            raise OSError(_EINVAL)
        data = memoryview(buf)
        old = bytearray(_STEP)  # what the flash holds: a write can only clear its bits
        with self._open(start + len(buf)) as f:
            for at in range(0, len(buf), _STEP):
                n = min(_STEP, len(buf) - at)
                f.seek(start + at)
                f.readinto(old)
                kept = int.from_bytes(old[:n], "little") & int.from_bytes(data[at:at + n], "little")
                f.seek(start + at)
                f.write(kept.to_bytes(n, "little"))


def rom_ioctl(op, n=0, *args):
    """``vfs.rom_ioctl`` of the ESP32 port: 1 the partition count, 2 partition ``n`` (or -22 if none)."""
    if op == 1:
        return _PARTS
    if op == 2:
        return Partition(n) if 0 <= n < _PARTS else -_EINVAL
    return -_EINVAL
