"""The sensor host: a meter's and an environment node's simulated parts run beside the node, and end with it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tools.sim.street import VirtualStreet


def _hosts(flash: Path) -> list[int]:
    """PIDs of the sensor hosts working in ``flash`` (the node's flash folder)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if b"board.sensor_host" in cmdline and Path(cwd) == flash.resolve():
            found.append(int(pid))
    return found


@pytest.mark.parametrize("role", ["meter", "env"])
def test_one_host_per_node_that_ends_with_a_power_cut(tmp_path: Path, role: str) -> None:
    """One host while the node runs; SIGKILL the node (a power cut) and its host is gone too."""
    with VirtualStreet(tmp_path, nodes=1, role=role, heapsize="128K") as street:
        street.start()
        flash = street.node(1).flash
        deadline = time.monotonic() + 30
        while not _hosts(flash) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_hosts(flash)) == 1
        assert (flash / "world.json").exists()
        street.kill_node(1)
        deadline = time.monotonic() + 30
        while _hosts(flash) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _hosts(flash) == []
