"""Code in ROM: a node's modules imported from its ROMFS image leave their bytecode and names' characters there."""

from __future__ import annotations

from pathlib import Path

from tools.bench.rom_imports import measure, modules_of


def test_modules_run_in_place_from_the_romfs_image(tmp_path: Path) -> None:
    """The same .mpy files cost far less heap from the mounted ROMFS image than read from files, and each
    module's source name is the path it runs from, so it interns one name fewer than from files."""
    rom = measure("meter", tmp_path, rom=True)
    files = measure("meter", tmp_path, rom=False)
    assert [r["module"] for r in rom] == [r["module"] for r in files] == modules_of("meter")
    assert rom[-1]["total"] < 0.75 * files[-1]["total"], (rom[-1], files[-1])
    assert all(r["heap"] >= 0 for r in rom)
    # Every module outside the firmware's own (asyncio is built in) has its __file__ and source name equal.
    assert files[-1]["qstrs"] - rom[-1]["qstrs"] >= 20, (rom[-1], files[-1])
    assert rom[-1]["pool_bytes"] > 0 and rom[-1]["name_bytes"] > 0


def test_a_ble_role_adds_its_radio_modules(tmp_path: Path) -> None:
    """``meter-ble``: the meter's modules, then the BLE part's; they cost names and heap of their own."""
    ble = measure("meter-ble", tmp_path, rom=True)
    assert [r["module"] for r in ble][:len(modules_of("meter"))] == modules_of("meter")
    assert [r["module"] for r in ble][-1] == "board.bluetooth"
    plain = ble[len(modules_of("meter")) - 1]
    assert ble[-1]["qstrs"] > plain["qstrs"] + 50 and ble[-1]["total"] > plain["total"], (plain, ble[-1])
