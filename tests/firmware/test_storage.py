"""Persistent counters under power cuts: the real firmware module on the unix port, SIGKILLed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")

# Hands out sequence numbers and meters 1 Wh per round as fast as it can, with
# a reservation block of 3 and an energy save due every round: the file is being
# rewritten nearly all the time, so kills land mid-write.
HAMMER = """
import sys, time
from firmware.storage import Storage
st = Storage("counters.json", seq_block=3)
print("boot", st.seq, st.energy_wh)
while True:
    s = st.next_seq()
    st.add_energy(36000, 1000)
    st.tick(time.ticks_add(time.ticks_ms(), 61000))
    print("pub", s, st.energy_wh)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "MICROPYPATH": f"{REPO}:.frozen"}


def test_power_cuts_never_repeat_seq_nor_rewind_energy(tmp_path: Path) -> None:
    """30 SIGKILLs at random instants: published seq strictly increases, energy never decreases."""
    script = tmp_path / "hammer.py"
    script.write_text(HAMMER)
    rng = random.Random(5)
    published: list[tuple[int, int]] = []
    boots: list[tuple[int, int]] = []
    for cut in range(30):
        proc = subprocess.Popen(
            [MICROPYTHON, "-X", "heapsize=128K", str(script)],
            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        assert proc.stdout is not None
        # Two cuts in three land at a random instant after the boot line, however long a busy machine
        # takes to start the process; the others at any instant, start-up included.
        booted = proc.stdout.readline() if cut % 3 else b""
        time.sleep(rng.uniform(0.05, 0.3))
        proc.send_signal(signal.SIGKILL)
        out = booted + proc.communicate()[0]
        lines = out.decode().splitlines()
        if not lines:
            continue  # killed before it printed anything (a loaded machine): nothing to check
        assert lines[0].startswith("boot"), out[-500:]
        _, seq0, wh0 = lines[0].split()
        boots.append((int(seq0), int(wh0)))
        for line in lines[1:]:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "pub":  # the last line may be cut short
                published.append((int(parts[1]), int(parts[2])))
    seqs = [s for s, _ in published]
    energy = [e for _, e in published]
    assert len(seqs) > 100
    assert seqs == sorted(set(seqs)), "a sequence number repeated or went backwards"
    assert energy == sorted(energy), "the published energy went backwards"
    assert energy[-1] > 0
    assert not (tmp_path / "counters.json.tmp").exists() or (tmp_path / "counters.json").exists()


def test_a_missing_file_falls_back_to_the_complete_temporary_copy(tmp_path: Path) -> None:
    """A cut between FAT's remove and rename: the .tmp copy carries the counters."""
    (tmp_path / "counters.json.tmp").write_text('{"seq": 700, "energy_wh": 42}')
    script = tmp_path / "boot.py"
    script.write_text(
        "from firmware.storage import Storage\n"
        "st = Storage('counters.json')\n"
        "print(st.next_seq(), st.energy_wh, st.error)\n"
    )
    out = subprocess.run(
        [MICROPYTHON, str(script)], cwd=tmp_path, env=_env(), capture_output=True, check=True
    ).stdout.decode().split()
    assert out == ["700", "42", "False"]


def test_a_corrupt_file_raises_the_storage_error_flag(tmp_path: Path) -> None:
    """Garbage in counters.json (and no temporary copy): counters restart, the flag says so."""
    (tmp_path / "counters.json").write_text("{not json")
    script = tmp_path / "boot.py"
    script.write_text(
        "from firmware.storage import Storage\n"
        "st = Storage('counters.json')\n"
        "print(st.error)\n"
        "st.next_seq()\n"
        "print(st.error, st.reserved)\n"
    )
    out = subprocess.run(
        [MICROPYTHON, str(script)], cwd=tmp_path, env=_env(), capture_output=True, check=True
    ).stdout.decode().split()
    assert out == ["True", "False", "100"]
