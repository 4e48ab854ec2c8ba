"""Updates staged in ROM partitions: the firmware's stage on the virtual board's flash, cut by SIGKILLs.

The virtual board's partitions (``boards/sim/rom_partitions.py``, ``sim_rom`` on a node's flash root)
behave as an ESP32's NOR flash: 4096-byte erase blocks, 4-byte aligned writes that only clear bits,
erases and writes torn by a power cut. The stage (``firmware/update_rom.py``) runs on the unix port.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
SIZE = 50_001  # neither a multiple of the 240-byte chunk nor of the 4-byte write

# Stages image.bin into partition 1 chunk by chunk, resuming from staging.json as the updater does.
STAGER = """
import json, os
from firmware.update_rom import stage_for

class Node:
    def flash_path(self, path):
        return path

def save(staged):
    with open("staging.tmp", "w") as f:
        json.dump(staged, f)
    os.rename("staging.tmp", "staging.json")

img = open("image.bin", "rb").read()
size = len(img)
stage = stage_for(Node(), 1)
print("kind", type(stage).__name__)
try:
    with open("staging.json") as f:
        staged = json.load(f)
    received = stage.resume(staged)
except OSError:
    received = -1
if received < 0:
    stage.begin(size)
    staged = {"size": size, "have": 0}
    save(staged)
    received = 0
print("resume", received)
while received < size:
    have = stage.write(received, img[received:received + 240])
    received = min(size, received + 240)
    if received == size:
        have = stage.complete(size)
    if have is not None:
        staged["have"] = have
        save(staged)
        print("have", have)
print("digest", stage.digest(size).hex())
"""

# Writes image.bin over what partition 1 holds without erasing it first: the mistake the flash must show.
NO_ERASE = """
import hashlib
from sim_rom import rom_ioctl
dev = rom_ioctl(2, 1)
img = open("image.bin", "rb").read()
dev.writeblocks(0, img + b"\\xff" * (-len(img) % 4), 0)
buf = bytearray(len(img))
dev.readblocks(0, buf, 0)
print("digest", hashlib.sha256(buf).digest().hex())
"""


def _flash(tmp_path: Path, seed: int) -> tuple[Path, bytes]:
    rng = random.Random(seed)
    flash = tmp_path / "flash"
    (flash / "rom").mkdir(parents=True)
    shutil.copyfile(REPO / "boards" / "sim" / "rom_partitions.py", flash / "sim_rom.py")
    image = rng.randbytes(SIZE)
    (flash / "image.bin").write_bytes(image)
    # the partition holds an older image: every block must be erased before it is written
    (flash / "rom" / "part1.bin").write_bytes(rng.randbytes(SIZE + 3000))
    return flash, image


def _run(flash: Path, script: str) -> subprocess.Popen[str]:
    (flash / "run.py").write_text(script)
    return subprocess.Popen([MICROPYTHON, "run.py"], cwd=flash, env={**os.environ, "MICROPYPATH": f"{REPO}:.frozen"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(flash: Path) -> list[str]:
    proc = _run(flash, STAGER)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return out.split()


def test_an_update_staged_in_a_rom_partition_hashes_to_the_image(tmp_path: Path) -> None:
    """Chunks over an older image, each block erased before it is written: the partition holds the image."""
    flash, image = _flash(tmp_path, 1)
    words = _finish(flash)
    assert words[:2] == ["kind", "RomStage"]
    assert words[words.index("digest") + 1] == hashlib.sha256(image).hexdigest()
    # the bytes past the image are the last chunk's 0xFF padding and erased flash, up to the block's end
    part = (flash / "rom" / "part1.bin").read_bytes()
    assert part[SIZE:4096 * 13] == b"\xff" * (4096 * 13 - SIZE)


def test_the_virtual_flash_shows_a_write_without_erase(tmp_path: Path) -> None:
    """Written over old bytes without an erase, bits only clear: the image read back is not the image."""
    flash, image = _flash(tmp_path, 2)
    proc = _run(flash, NO_ERASE)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert out.split()[-1] != hashlib.sha256(image).hexdigest()


def test_misaligned_writes_are_refused_as_on_the_chip(tmp_path: Path) -> None:
    """A write at an offset or of a length that is not a multiple of 4: OSError(EINVAL), nothing written."""
    flash, _ = _flash(tmp_path, 3)
    before = (flash / "rom" / "part1.bin").read_bytes()
    proc = _run(flash, "from sim_rom import rom_ioctl\ndev = rom_ioctl(2, 1)\n"
                       "for at, n in ((2, 4), (0, 6)):\n"
                       "    try:\n        dev.writeblocks(0, bytes(n), at)\n    except OSError as e:\n"
                       "        print('refused', e.errno)\n")
    out, _ = proc.communicate(timeout=60)
    assert out.split() == ["refused", "22", "refused", "22"]
    assert (flash / "rom" / "part1.bin").read_bytes() == before


def test_power_cuts_while_staging_resume_to_the_whole_image(tmp_path: Path) -> None:
    """SIGKILLs at random instants (mid-erase, mid-write): every restart resumes or starts again, never a mix.

    Every other cut waits until one or two more blocks are stored, so some cuts land after a block was
    whole whatever the machine's speed; the instant within the block is random."""
    flash, image = _flash(tmp_path, 4)
    rng = random.Random(6)
    cuts = resumed = 0
    while cuts < 8:
        proc = _run(flash, STAGER)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # started: a cut from now lands in the staging
        assert first.startswith("kind"), first
        start = proc.stdout.readline().split()
        assert start[0] == "resume", start
        resumed += int(start[1] != "0")  # this run took up a staging a cut had left
        for _ in range(cuts % 3):  # 0, 1 or 2 more blocks stored by this run before its cut
            if not proc.stdout.readline().startswith("have"):
                break
        time.sleep(rng.uniform(0.0, 0.01))
        if proc.poll() is not None:
            proc.communicate()  # it finished before the cut: start again
            (flash / "staging.json").unlink()
            continue
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        cuts += 1
    for _ in range(2):  # then to the end, twice: a finished staging is resumed as whole
        words = _finish(flash)
        assert words[words.index("digest") + 1] == hashlib.sha256(image).hexdigest()
    assert words[words.index("resume") + 1] == str(SIZE)
    assert resumed >= 1, "no cut landed after a block was whole: nothing was resumed"
