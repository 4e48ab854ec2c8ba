"""Where an update is staged: the code slot not running, a ROM partition on a chip or a file.

:func:`stage_for` picks, for the slot to stage into:

- :class:`RomStage` where the node keeps its code in ROM partitions 0 and 1
  (``vfs.rom_ioctl`` of MicroPython 1.25+ with two partitions; the ESP32 port
  gives ``esp32.Partition`` objects: ``ioctl(4)`` block count, ``ioctl(5)``
  block size, ``ioctl(6, n)`` erase block ``n``, ``readblocks`` and
  ``writeblocks(block, buf, offset)``; the unix port has no ``rom_ioctl``, so the
  virtual board carries ``sim_rom``, a stand-in that behaves as that flash);
- :class:`FileStage` otherwise (``rom/slot<n>.img``, :mod:`update_boot`).

Both say how much of an update survived a power cut (``resume``), take the
chunks in order (``write``) and hash what they hold (``digest``).

Flash is NOR: a write only clears bits, an erase sets a whole block to 0xFF.
:class:`RomStage` erases each block just before the first byte written in it,
writes at the chip's 4-byte alignment (the last chunk padded with 0xFF, which
leaves erased flash as it is), and counts in the staging record (``have``) how
many bytes lie in whole blocks written before. A power cut tears at most the
block being erased or written: a resume starts at the last whole block (erased
again) and the gateway sends again from the chunk that holds it. The SHA-256
checked at COMMIT covers the whole image, so a torn partition is never
switched to.
"""

import gc
import hashlib
import os

from protocols.update import CHUNK

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_ALIGN = const(4)  # the ESP32's smallest write
_READ = const(512)


def partitions():
    """``rom_ioctl`` where the node keeps its code slots in ROM partitions 0 and 1, else None (as update_boot)."""
    try:
        from vfs import rom_ioctl
    except ImportError:  # the unix port: the virtual board's ROM partitions, if it has them
        try:
            import sim_rom
        except ImportError:
            return None
        rom_ioctl = sim_rom.rom_ioctl
    if rom_ioctl(1) < 2 or not hasattr(rom_ioctl(2, 1), "ioctl"):
        return None
    return rom_ioctl


def stage_for(node, slot):
    """The stage of code slot ``slot`` on ``node``."""
    gc.collect()  # the first update of a BLE node's tight heap: room for the partitions' driver
    rom_ioctl = partitions()
    if rom_ioctl is not None:
        return RomStage(rom_ioctl(2, slot))
    return FileStage(node.flash_path("rom/slot%d.img" % slot))


def _digest(read, size):
    h = hashlib.sha256()
    buf = bytearray(_READ)
    view = memoryview(buf)
    at = 0
    while at < size:
        n = min(_READ, size - at)
        read(at, view[:n])
        h.update(view[:n])
        at += n
    return h.digest()


class RomStage:
    """An update staged in a ROM partition (``dev``: the block protocol of ``esp32.Partition``)."""

    def __init__(self, dev):
        self.dev = dev
        self.block = dev.ioctl(5, 0)
        self.capacity = dev.ioctl(4, 0) * self.block
        self.durable = 0  # bytes in whole blocks written: what a power cut cannot tear

    def begin(self, size):
        """A new update of ``size`` bytes; False if the partition cannot hold it."""
        self.durable = 0
        return size <= self.capacity

    def resume(self, staged):
        """Bytes received that survived (``staged``: the staging record); -1 to start again."""
        have = staged.get("have", 0)
        if have < 0 or have > staged["size"] or (have % self.block and have != staged["size"]):
            return -1
        self.durable = have
        return have if have == staged["size"] else have - have % CHUNK

    def write(self, offset, data):
        """Write the chunk at ``offset``; the new ``have`` to record when a block was completed, else None."""
        end = offset + len(data)
        start = offset if offset > self.durable else self.durable  # below: in whole blocks already
        if start < end:
            bs = self.block
            for block in range((start + bs - 1) // bs, (end - 1) // bs + 1):
                self.dev.ioctl(6, block)  # its first byte is written now: erased first
            part = data[start - offset:]
            pad = -len(part) % _ALIGN
            if pad:
                part = bytes(part) + b"\xff" * pad
            self.dev.writeblocks(start // bs, part, start % bs)
        whole = end - end % self.block
        if whole > self.durable:
            self.durable = whole
            return whole
        return None

    def complete(self, size):
        """The image's last chunk is in: ``have`` covers it all (the record to write)."""
        self.durable = size
        return size

    def digest(self, size):
        """SHA-256 of the first ``size`` bytes of the partition."""
        bs = self.block
        return _digest(lambda at, buf: self.dev.readblocks(at // bs, buf, at % bs), size)


class FileStage:
    """An update staged in a file (a node whose code slots are files): its length is what was received."""

    def __init__(self, path):
        self.path = path

    def begin(self, size):
        with open(self.path, "wb"):
            pass
        return True

    def resume(self, staged):
        try:
            have = os.stat(self.path)[6]
        except OSError:
            return -1
        # a chunk torn by a power cut cannot be cut off a file here: the update starts again
        return -1 if have > staged["size"] or (have % CHUNK and have != staged["size"]) else have

    def write(self, offset, data):
        """Append the chunk; a file's length says what was received, so nothing to record."""
        with open(self.path, "ab") as f:
            f.write(data)

    def complete(self, size):
        """Nothing to record (the file's length)."""

    def digest(self, size):
        f = open(self.path, "rb")

        def read(at, buf):
            f.readinto(buf)

        try:
            return _digest(read, size)
        finally:
            f.close()
