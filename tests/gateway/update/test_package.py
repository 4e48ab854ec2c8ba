"""Update packages: what the key holder signs, and every way a package file can be unusable."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.update.package import MAGIC, PackageError, load_package, make_package, parse_package
from protocols.update import mac

REPO = Path(__file__).resolve().parents[3]


def test_a_package_round_trips_and_carries_the_mac_the_node_computes() -> None:
    image = bytes(range(256)) * 10
    package = make_package(image, key=b"k", role="meter", board="esp32_meter", health_s=45)
    again = parse_package(package.to_bytes())
    assert again == package
    assert again.tag == mac(b"k", "meter", len(image), 45, hashlib.sha256(image).digest())


@pytest.mark.parametrize(("mangle", "says"), [
    (lambda d: b"NOTANUPDATE\n" + d[len(MAGIC):], "not an update package"),
    (lambda d: d[: len(MAGIC) + 5], "cut short"),
    (lambda d: d[:-1], "the header says 2560 bytes of image, the file holds 2559"),
    (lambda d: d[:-1] + bytes((d[-1] ^ 1,)), "SHA-256 is not the header's (corrupted)"),
    (lambda d: d.replace(b'"health_s": 30', b'"health_s": "x"'), "bad header"),
])
def test_an_unusable_package_is_refused_with_what_is_wrong(mangle: object, says: str) -> None:
    data = make_package(bytes(range(256)) * 10, key=b"k", role="lamp", board="sim").to_bytes()
    with pytest.raises(PackageError, match=says.replace("(", r"\(").replace(")", r"\)")):
        parse_package(mangle(data))  # type: ignore[operator]


def test_bad_signing_requests_are_refused() -> None:
    with pytest.raises(PackageError, match="an empty key"):
        make_package(b"x", key=b"", role="lamp", board="sim")
    with pytest.raises(PackageError, match="health time 0"):
        make_package(b"x", key=b"k", role="lamp", board="sim", health_s=0)
    with pytest.raises(PackageError, match="this one 0"):
        make_package(b"", key=b"k", role="lamp", board="sim")
    with pytest.raises(PackageError, match="No such file"):
        load_package(Path("/nonexistent/lamp.update"))


def test_update_pack_signs_a_built_image_from_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "lamps.key").write_bytes(b"the lamps' key")
    out = tmp_path / "lamp.update"
    done = subprocess.run([sys.executable, "-m", "tools.cli", "update", "pack", "--key", str(tmp_path / "lamps.key"),
                           "--workdir", str(tmp_path / "build"), "--out", str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    package = load_package(out)
    rom = json.loads((tmp_path / "build" / "image-sim-lamp" / "manifest.json").read_text())["rom"]
    assert package.digest.hex() == rom["sha256"] and package.role == "lamp" and package.health_s == 30
    assert f"sha256 {rom['sha256'][:16]}" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "tools.cli", "update", "send", "--bus", "/dev/null", "--units", "1,x",
                          "--package", str(out)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "--units '1,x'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
