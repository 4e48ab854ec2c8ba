"""streetedge decode: either profile's payload as resolved SenML records; compact needs its birth."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.audit import AuditLog
from gateway.contracts import HOLDING, INPUT, load_role
from gateway.delivery import birth, compact
from gateway.delivery.senml_records import build_pack, encode_pack
from tools.decode import decode_message, resolve_payload
from tools.operator import Signer

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


# Every other message kind the gateway publishes (docs/upstream.md), as `streetedge decode` shows it.

STATE_HEX = "a3666f6e6c696e65f56773657373696f6e07627473fb41dacdbb20000000"  # docs/upstream.md, State
DELIVERY_HEX = (  # docs/upstream.md, Delivery
    "a76773657373696f6e076373657104627473fb41dacdbb200000006673746f72656419cb916764726f70706564a26872656164696e67"
    "731878666576656e7473006a6475706c6963617465730365646570746800"
)


def test_the_documented_state_and_delivery_examples_decode_with_their_kind() -> None:
    assert decode_message(bytes.fromhex(STATE_HEX)) == {
        "kind": "gateway_state", "online": True, "session": 7, "ts": 1798761600.0}
    assert decode_message(bytes.fromhex(DELIVERY_HEX)) == {
        "kind": "delivery", "session": 7, "seq": 4, "ts": 1798761600.0, "stored": 52113,
        "dropped": {"readings": 120, "events": 0}, "duplicates": 3, "depth": 0}
    assert decode_message(birth.state(online=False, session=3))["kind"] == "gateway_state"


def test_births_decode_with_their_ids_in_hex() -> None:
    gateway_birth = decode_message(_birth())
    assert gateway_birth["kind"] == "gateway_birth" and gateway_birth["nodes"][0][0] == "lamp-1"
    schema_id = birth.schema_of(LAMP).id.hex()
    assert gateway_birth["nodes"][0][1] == schema_id and gateway_birth["schemas"][schema_id][0] == "lamp"
    node = birth.encode(birth.node_birth(node="lamp-1", schema=birth.schema_of(LAMP), session=1, seq=1, ts=0.0,
                                         firmware=7))
    assert decode_message(node) == {"kind": "node_birth", "v": 1, "node": "lamp-1", "session": 1, "seq": 1,
                                    "ts": 0.0, "role": "lamp", "schema": schema_id, "firmware": 7}


def test_node_state_result_and_audit_entries_decode() -> None:
    dead = cbor2.dumps({"online": False, "ts": 5.0, "error": "unit 3 on bus0: no answer"})
    assert decode_message(dead) == {"kind": "node_state", "online": False, "ts": 5.0,
                                    "error": "unit 3 on bus0: no answer"}
    assert decode_message(dead, topic="streetedge/v1/s/g/node/lamp-3/state")["kind"] == "node_state"
    result = cbor2.dumps({"id": "c1", "status": "rejected", "reason": "expired", "detail": "too late", "ts": 1.0})
    assert decode_message(result)["reason"] == "expired"
    assert decode_message(result)["kind"] == "result"
    published: list[bytes] = []
    log = AuditLog("", publish=published.append, clock=lambda: 1.8e9)
    log.append("refused", id="c1", reason="expired")
    entry = decode_message(published[0])
    assert entry["kind"] == "audit" and entry["event"] == "refused" and entry["seq"] == 1


def test_a_signed_command_shows_its_key_and_command_unverified() -> None:
    envelope = Signer(Ed25519PrivateKey.generate(), "ops-night").envelope("lamp-1", "dim", {"level": 40},
                                                                          command_id="n1")
    shown = decode_message(envelope)
    assert shown["kind"] == "signed_command" and shown["verified"] is False
    assert shown["kid"] == "ops-night" and shown["alg"] == "EdDSA"
    assert shown["command"]["id"] == "n1" and shown["command"]["params"] == {"level": 40}


def test_events_resolve_like_data() -> None:
    pack = [{"bn": "urn:dev:streetedge:s:lamp-1:", "n": "event", "t": 1.8e9, "vs": "boot"},
            {"n": "event_value", "t": 1.8e9, "v": 0}]
    records = decode_message(encode_pack(pack))
    assert [r["n"] for r in records] == ["urn:dev:streetedge:s:lamp-1:event", "urn:dev:streetedge:s:lamp-1:event_value"]
    assert records[0]["vs"] == "boot"


def test_a_cbor_item_that_is_no_message_is_refused() -> None:
    with pytest.raises(ValueError, match="not a message of the gateway"):
        decode_message(cbor2.dumps("hello"))
