"""config.json validation on the unix port: good files load, anything else means safe mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = str(Path(sys.executable).parent / "micropython")
PROBE = """
import json
from firmware import config
c = config.load("config.json")
print(json.dumps({"unit": c.unit, "role": c.role, "baud": c.baud, "sample_ms": c.sample_ms,
                  "safe_mode": c.safe_mode, "problem": c.problem}))
"""


def load(tmp_path: Path, text: str | None) -> dict[str, object]:
    """What firmware.config.load makes of ``text`` as config.json (None: no file)."""
    if text is not None:
        (tmp_path / "config.json").write_text(text)
    (tmp_path / "probe.py").write_text(PROBE)
    out = subprocess.run(
        [MICROPYTHON, "probe.py"], cwd=tmp_path, capture_output=True, check=True,
        env={**os.environ, "MICROPYPATH": f"{REPO}:.frozen"},
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_a_valid_file_is_used_as_is(tmp_path: Path) -> None:
    """unit, role, baud and sample_ms come from the file."""
    c = load(tmp_path, '{"unit": 12, "role": "lamp", "baud": 9600, "sample_ms": 500}')
    assert c == {"unit": 12, "role": "lamp", "baud": 9600, "sample_ms": 500,
                 "safe_mode": False, "problem": None}


def test_baud_and_sample_period_are_optional(tmp_path: Path) -> None:
    """Missing baud and sample_ms take 19200 and 1000 ms, without safe mode."""
    c = load(tmp_path, '{"unit": 3, "role": "lamp"}')
    assert (c["baud"], c["sample_ms"], c["safe_mode"]) == (19200, 1000, False)


def test_a_node_without_a_bus_has_baud_zero(tmp_path: Path) -> None:
    """``"bus": false`` (a battery BLE node): no bus, so no baud rate; ``true`` is the default."""
    assert load(tmp_path, '{"unit": 3, "role": "lamp", "bus": false}')["baud"] == 0
    assert load(tmp_path, '{"unit": 3, "role": "lamp", "bus": true, "baud": 9600}')["baud"] == 9600


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        (None, "no config.json"),
        ("{unit: 1", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"unit": 0, "role": "lamp"}', "unit"),
        ('{"unit": 248, "role": "lamp"}', "unit"),
        ('{"unit": true, "role": "lamp"}', "unit"),
        ('{"unit": "5", "role": "lamp"}', "unit"),
        ('{"unit": 5, "role": "toaster"}', "role"),
        ('{"unit": 5, "role": "lamp", "baud": 12345}', "baud"),
        ('{"unit": 5, "role": "lamp", "sample_ms": 10}', "sample_ms"),
        ('{"unit": 5, "role": "lamp", "bus": 0}', "bus must be true or false, got 0"),
    ],
)
def test_anything_else_means_safe_mode(tmp_path: Path, text: str | None, hint: str) -> None:
    """Safe mode: unit 247, 19200 baud, lamp role, and a problem naming the field."""
    c = load(tmp_path, text)
    assert c["safe_mode"] is True
    assert (c["unit"], c["baud"], c["role"]) == (247, 19200, "lamp")
    assert hint in str(c["problem"])
