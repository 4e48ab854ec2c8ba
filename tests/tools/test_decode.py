"""streetedge decode: either profile's payload as resolved SenML records; compact needs its birth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.delivery import birth, compact
from gateway.delivery.senml_records import build_pack, encode_pack
from tools.decode import resolve_payload

REPO = Path(__file__).resolve().parents[2]
LAMP = load_role("lamp")
REGS = [r for t in (HOLDING, INPUT) for r in LAMP.registers if r.table == t]


def _birth() -> bytes:
    return birth.encode(birth.gateway_birth(site="s", gateway="g", session=1, ts=0.0, profile="compact",
                                            nodes=[("lamp-1", birth.schema_of(LAMP))]))


def test_both_profiles_resolve_to_the_same_records() -> None:
    raws = [int(r.minimum) for r in REGS]
    senml_payload = encode_pack(build_pack("s", "lamp-1", 1_798_761_600.5, list(zip(REGS, raws, strict=True))))
    gb = _birth()
    compact_payload = compact.encode([compact.Row(0, 1_798_761_600_500, raws)], cbor2.loads(gb), seq=1)
    assert resolve_payload(compact_payload, gb) == resolve_payload(senml_payload)


def test_a_compact_message_without_its_birth_is_refused_with_advice() -> None:
    payload = compact.encode([compact.Row(0, 1_798_761_600_500, [int(r.minimum) for r in REGS])],
                             cbor2.loads(_birth()), seq=1)
    with pytest.raises(ValueError, match="--birth"):
        resolve_payload(payload)


def test_the_command_line_prints_json_records(tmp_path: Path) -> None:
    gb = tmp_path / "birth.cbor"
    gb.write_bytes(_birth())
    message = tmp_path / "compact.cbor"
    message.write_bytes(compact.encode([compact.Row(0, 1_798_761_600_500, [int(r.minimum) for r in REGS])],
                                       cbor2.loads(gb.read_bytes()), seq=1))
    done = subprocess.run([sys.executable, "-m", "tools.cli", "decode", str(message), "--birth", str(gb)],
                          capture_output=True, text=True, cwd=REPO, check=True)
    records = json.loads(done.stdout)
    assert records[0]["n"] == "urn:dev:streetedge:s:lamp-1:dim_level"
    bad = subprocess.run([sys.executable, "-m", "tools.cli", "decode", str(message)],
                         capture_output=True, text=True, cwd=REPO, check=False)
    assert bad.returncode == 2 and "--birth" in bad.stderr
