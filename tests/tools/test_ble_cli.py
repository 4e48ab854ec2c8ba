"""``streetedge ble scan`` on the virtual radio: RSSI, role, counter, and whether the configured key decrypts."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.service.config import load_config
from tools.ble_cli import scan, table
from tools.cli import main
from tools.sim.ble_beacons import Beacon
from tools.sim.bleak_bumble import scanner_backend
from tools.sim.radio import VirtualRadio

CONFIG = """
site = "s"
gateway = "g"
[ble]
counters = "{counters}"
[[ble.node]]
id = "pit-1"
address = "D0:5E:00:00:00:01"
key = "00112233445566778899aabbccddeeff"
role = "meter"
[[ble.node]]
id = "pole-2"
address = "D0:5E:00:00:00:02"
key = "ffeeddccbbaa99887766554433221100"
role = "env"
"""


def test_scan_tells_good_keys_wrong_keys_and_strangers(tmp_path: Path) -> None:
    """pit-1 with its key (yes), pole-2 sealing with another key (NO), a stranger (no key); counters shown."""
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(counters=tmp_path / "ble.sqlite"))
    nodes = list(load_config(path).ble.node)

    async def main_() -> dict:
        radio = VirtualRadio()
        good = Beacon(radio, "D0:5E:00:00:00:01", bytes.fromhex("00112233445566778899aabbccddeeff"), "meter", 50)
        wrong = Beacon(radio, "D0:5E:00:00:00:02", bytes(16), "env", 50)
        stranger = Beacon(radio, "D0:5E:00:00:00:03", bytes(16), "meter", 50)
        for beacon in (good, wrong, stranger):
            await beacon.start()
        good.counter = 41
        await good.reading([3300, 7])
        await wrong.reading([2150, 5500, 1013250, 120, 300])
        await stranger.reading([3300, 1])
        return await scan(nodes, 0.5, scanner_backend(radio))

    heard = asyncio.run(main_())
    rows = {a: (r.role, r.counter, r.decrypts, r.node) for a, r in heard.items()}
    assert rows == {
        "D0:5E:00:00:00:01": ("meter", 42, "yes", "pit-1"),
        "D0:5E:00:00:00:02": ("env", 1, "NO", "pole-2"),
        "D0:5E:00:00:00:03": ("?", 1, "no key", ""),
    }
    assert all(r.rssi < 0 and r.adverts >= 1 for r in heard.values())
    lines = table(heard).splitlines()
    assert len(lines) == 4 and {line.split()[0] for line in lines[1:]} == set(rows)


def test_the_command_prints_the_table(tmp_path: Path, capsys) -> None:
    path = tmp_path / "gateway.toml"
    path.write_text(CONFIG.format(counters=tmp_path / "ble.sqlite"))
    assert main(["ble", "scan", "--config", str(path), "--virtual", "3", "--seconds", "0.5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["address", "rssi", "role", "counter"]
    decrypts = {line.split()[0]: line for line in out[1:]}
    assert "yes" in decrypts["D0:5E:00:00:00:01"] and "pit-1" in decrypts["D0:5E:00:00:00:01"]
    assert "no key" in decrypts["D0:5E:00:00:FF:02"]
