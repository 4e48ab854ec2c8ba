"""Images for every board and role: each builds, carries only its role's modules, and stays under 100 KB."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.image import ImageError, board_info, boards, build_image, node_roles, roles_of

PAIRS = [(b, r) for b in boards() for r in roles_of(b)]
LIMIT = 100 * 1024
# What a role's image must not carry: the other roles' code, and the gateway-side codecs; a lamp builds its
# night's plan with firmware.night_plan and carries not the whole schedule (override, photocell, level_at).
FOREIGN = {
    "lamp": ("firmware/roles/meter", "firmware/roles/env", "firmware/pulses", "firmware/bme280", "firmware/sds011",
             "protocols/roles/meter", "protocols/roles/env", "firmware/schedule", "firmware/astro"),
    "meter": ("firmware/roles/lamp", "firmware/schedule", "firmware/night_plan", "firmware/astro", "firmware/almanac",
              "firmware/bme280",
              "firmware/sds011",
              "protocols/roles/lamp", "protocols/roles/env"),
    "env": ("firmware/roles/lamp", "firmware/schedule", "firmware/night_plan", "firmware/astro", "firmware/almanac",
            "firmware/pulses",
            "protocols/roles/lamp", "protocols/roles/meter"),
}
EVERYWHERE = ("protocols/cbor", "protocols/senml")


def test_every_board_and_role_is_covered() -> None:
    """Four boards: the virtual one carries every role, each ESP32 board its own."""
    assert node_roles() == ["env", "lamp", "meter"]
    assert set(PAIRS) == {("sim", "env"), ("sim", "lamp"), ("sim", "meter"), ("esp32_lamp", "lamp"),
                          ("esp32_meter", "meter"), ("esp32_env", "env")}


@pytest.mark.parametrize(("board", "role"), PAIRS, ids=[f"{b}-{r}" for b, r in PAIRS])
def test_image_builds_trimmed_and_small(board: str, role: str, tmp_path: Path) -> None:
    """The image of the pair: the board's default target, its role only, under 100 KB."""
    manifest = build_image(board, role, tmp_path / "img")
    paths = {f["path"] for f in manifest["files"]}
    assert manifest["march"] == board_info(board)["march"]
    assert manifest["march"] == ("xtensawin" if board.startswith("esp32_") else None)
    assert {"main.py", "board/__init__.mpy", "firmware/node.mpy", "firmware/imageinfo.mpy",
            f"firmware/roles/{role}.mpy", f"protocols/roles/{role}.mpy"} <= paths
    if board.startswith("esp32_"):
        assert "esp32_common/__init__.mpy" in paths
    for prefix in FOREIGN[role] + EVERYWHERE:
        assert not any(p.startswith(prefix) for p in paths), (prefix, sorted(paths))
    assert manifest["total_bytes"] < LIMIT
    assert sum(manifest["packages"].values()) == manifest["total_bytes"]


def test_a_board_refuses_a_role_it_cannot_carry(tmp_path: Path) -> None:
    """A lamp board has no reed switches: no meter image for it."""
    with pytest.raises(ImageError, match="cannot carry role 'meter'"):
        build_image("esp32_lamp", "meter", tmp_path / "a")


def test_a_trimmed_image_knows_its_role_and_boots_it_in_safe_mode(tmp_path: Path) -> None:
    """imageinfo names the role; a config naming another role falls back to the image's own (safe mode)."""
    out = tmp_path / "img"
    build_image("sim", "meter", out)
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text('{"unit": 3, "role": "lamp"}')
    probe = (
        "from firmware import config, roles\n"
        "c = config.load('config.json')\n"
        "print(roles.BUILT, c.role, c.safe_mode, c.problem)\n"
        "print(roles.load(c.role).ROLE_ID)\n"
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "micropython"), "-X", "heapsize=128K", "-c", probe],
        cwd=flash, capture_output=True, text=True, check=False,
        env={**os.environ, "MICROPYPATH": f"{out}:.frozen"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    first, second = result.stdout.splitlines()[:2]
    assert first.startswith("meter meter True ") and "not in this image" in first
    assert second == "2"


def test_cli_builds_with_the_board_default_target_and_reports_the_size(tmp_path: Path) -> None:
    """``streetedge image build --board esp32_meter --role meter``: xtensawin, size in the summary line."""
    out = tmp_path / "img"
    proc = subprocess.run(
        [sys.executable, "-m", "tools.cli", "image", "build", "--board", "esp32_meter", "--role", "meter",
         "--out", str(out)],
        capture_output=True, text=True, check=False, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "image esp32_meter/meter (xtensawin):" in proc.stdout and " KB" in proc.stdout
