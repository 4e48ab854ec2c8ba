"""The gateway's one decoder of untrusted CBOR: plain data or CborError, with the reason."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cbor2
import pytest

from gateway.commands.strict_cbor import MAX_DEPTH, CborError, loads_strict
from gateway.errors import GatewayError
from tools.fuzz import cbor as fuzz

VECTORS = json.loads((Path(__file__).resolve().parents[2] / "protocols/vectors/cbor_appendix_a.json").read_text())


def _plain(hex_item: str) -> bool:
    # Appendix A items that are plain data: no tag (c0..db), no simple value other than false/true/null/floats.
    try:
        return not _has_tag(cbor2.loads(bytes.fromhex(hex_item)))
    except Exception:
        return False


def _has_tag(obj: object) -> bool:
    if isinstance(obj, list | tuple):
        return any(_has_tag(x) for x in obj)
    if isinstance(obj, dict):
        return any(_has_tag(k) or _has_tag(v) for k, v in obj.items())
    return not isinstance(obj, bytes | str | int | float | bool | type(None))


def test_appendix_a_plain_items_decode_like_cbor2_and_the_rest_is_refused():
    accepted = refused = 0
    for item in VECTORS:
        data = bytes.fromhex(item["hex"])
        if _plain(item["hex"]):
            value = loads_strict(data)
            theirs = cbor2.loads(data)
            assert repr(value) == repr(theirs) or (isinstance(value, float) and math.isnan(value)), item["hex"]
            accepted += 1
        else:
            with pytest.raises(CborError):
                loads_strict(data)
            refused += 1
    assert accepted > 50 and refused > 5


def test_trailing_bytes_depth_and_tags_are_refused_with_the_reason():
    with pytest.raises(CborError, match="1 bytes after the CBOR item"):
        loads_strict(b"\x01\x02")
    deep = b"\x81" * (MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(CborError, match="nested deeper"):
        loads_strict(deep)
    assert loads_strict(b"\x81" * MAX_DEPTH + b"\x00") is not None
    with pytest.raises(CborError, match="unexpected CBOR tag 18"):
        loads_strict(cbor2.dumps(cbor2.CBORTag(18, [1])))
    tagged = loads_strict(cbor2.dumps(cbor2.CBORTag(18, [1])), top_tags=frozenset({18}))
    assert isinstance(tagged, cbor2.CBORTag) and list(tagged.value) == [1]
    with pytest.raises(CborError, match="semantic tag"):
        loads_strict(cbor2.dumps({"when": cbor2.CBORTag(1, 1_800_000_000)}))
    with pytest.raises(CborError, match="not CBOR"):
        loads_strict(b"\x1b\x00")


def test_a_refusal_is_a_gateway_error_and_a_value_error():
    with pytest.raises(GatewayError):
        loads_strict(b"")
    with pytest.raises(ValueError):
        loads_strict(b"")


def test_fuzzer_small_run_only_accepts_or_refuses(capsys):
    """2,000 cases of the CBOR fuzzer (python -m tools.fuzz.cbor runs 100,000) through its command line."""
    assert fuzz.main(["--cases", "2000", "--seed", "3"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("cbor (gateway, cbor2 + strict checks): 2000 cases, ")
    assert ", 0 crashes, 0 hangs" in first
    summary = fuzz.run(2000, seed=4)["cbor (gateway, cbor2 + strict checks)"]
    assert summary.accepted > 100 and summary.refused > 100
