# Boot stub on the node's flash root, beside main.py: pick the code slot, mount its ROMFS image at /rom,
# and roll back a new image that did not prove itself. It lives outside the images it chooses between,
# so a bad image can never keep the node from booting the one before it.
#
# Slots 0 and 1: ROM partitions 0 and 1 where the port has vfs.rom_ioctl with two partitions (an ESP32:
# memory-mapped flash, nothing in the heap; the virtual board: sim_rom on the flash root, read into a
# buffer), else the files rom/slot0.img and rom/slot1.img (read into a buffer).
# rom/state.json: {"active": 0|1, "trial": bool, "tries": n, "previous": 0|1, "rolled_back": n}.
# "trial": the active slot was just switched to (firmware/update.py) and has not yet reported healthy;
# every boot of a trial is counted here, before its code runs, so a trial that crashes or hangs at boot
# (the watchdog resets it) is rolled back after _MAX_TRIAL_BOOTS boots, whatever it does. A trial that
# boots but is not healthy within its time rolls itself back (firmware/update.py).
# The state changes only by writing a temporary file and renaming it: a power cut leaves the old or the new.
import gc
import json
import os
import sys

import vfs

_STATE = "rom/state.json"
_MAX_TRIAL_BOOTS = 3


def slot_path(slot):
    """The file of code slot ``slot`` (0 or 1)."""
    return "rom/slot%d.img" % slot


def read_state():
    """The slot state, or None if the node has no code slots (its image runs from files)."""
    try:
        with open(_STATE) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("active") in (0, 1) else None


def write_state(state):
    """Replace the slot state atomically."""
    tmp = _STATE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.rename(tmp, _STATE)


def partitions():
    """``rom_ioctl`` where the node keeps its code slots in ROM partitions 0 and 1, else None (files).

    A chip's ``vfs.rom_ioctl`` gives partition objects with the block protocol (the ESP32's
    ``esp32.Partition``); the unix port has none, so the virtual board carries ``sim_rom``, its stand-in.
    """
    try:
        from vfs import rom_ioctl
    except ImportError:  # the unix port: the virtual board's ROM partitions, if it has them
        try:
            import sim_rom
        except ImportError:
            return None
        rom_ioctl = sim_rom.rom_ioctl
    if rom_ioctl(1) < 2 or not hasattr(rom_ioctl(2, 1), "ioctl"):
        return None  # one partition (the stock ESP32 layout), or no block protocol: slots in files
    return rom_ioctl


def image_bytes(header):
    """Bytes of the ROMFS image that starts with ``header`` (its first 8 bytes or more); 0 if none starts there."""
    if header[:3] != b"\xd2\xcd\x31":
        return 0
    size = 0
    for i in range(3, len(header)):
        size = (size << 7) | (header[i] & 0x7F)
        if not header[i] & 0x80:
            return i + 1 + size
    return 0


def choose(state):
    """The slot to boot now; counts a trial's boots and rolls a failed trial back (state written)."""
    if state.get("trial"):
        tries = state.get("tries", 0) + 1
        if tries > _MAX_TRIAL_BOOTS:
            state = {"active": state.get("previous", 1 - state["active"]), "trial": False, "tries": 0,
                     "rolled_back": state.get("rolled_back", 0) + 1}
        else:
            state["tries"] = tries
        write_state(state)
    return state["active"]


def _mapped(dev):
    try:
        memoryview(dev)  # a chip's partition is mapped flash: mounted in place
    except TypeError:
        return False
    return True


def _read_image(dev, slot):
    # The image in partition ``dev`` as a buffer in the heap, and the heap bytes it takes.
    head = bytearray(8)
    dev.readblocks(0, head, 0)
    size = image_bytes(head)
    if not size:
        raise OSError("code slot %d holds no ROMFS image" % slot)
    gc.collect()
    before = gc.mem_alloc()
    buf = bytearray(size)
    dev.readblocks(0, buf, 0)
    return buf, gc.mem_alloc() - before


def mount(boot=True):
    """Mount the active slot's image at /rom, first on the import path; the heap bytes its buffer takes.

    ``boot``: this is the node's boot (a trial's boots are counted); False for a helper process of the
    virtual board that runs code of the same image (its sensor host).
    """
    state = read_state()
    if state is None:
        return 0
    slot = choose(state) if boot else state["active"]
    rom_ioctl = partitions()
    used = 0
    if rom_ioctl is not None:
        try:
            vfs.umount("/rom")  # a chip mounts partition 0 at boot
        except OSError:
            pass
        buf = rom_ioctl(2, slot)
        if not _mapped(buf):  # the virtual board's partition: read into the heap
            buf, used = _read_image(buf, slot)
    else:
        path = slot_path(slot)
        gc.collect()
        before = gc.mem_alloc()
        buf = bytearray(os.stat(path)[6])
        with open(path, "rb") as f:
            f.readinto(buf)
        used = gc.mem_alloc() - before  # the buffer: flash on a chip, so not the node's RAM
    sys.modules.pop("sim_rom", None)  # a chip's rom_ioctl is in its firmware, not in the heap
    vfs.mount(vfs.VfsRom(buf), "/rom")  # type: ignore[attr-defined]  # MicroPython 1.25+; the stubs lack it
    sys.path.insert(0, "/rom")
    return used
