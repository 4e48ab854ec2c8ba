"""protocols.senml against an independent resolver, a general JSON parser and cbor2; CPython only."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import senml

_SETTINGS = settings(max_examples=150, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])
_BASES = ("bn", "bt", "bu", "bv", "bs", "bver")


def reference_resolve(pack: list[dict[str, Any]], now: float | None = None) -> list[dict[str, Any]]:
    """RFC 8428 section 4.6, written from the text alone and kept apart from protocols.senml."""
    bases: dict[str, Any] = {}
    version = next((r["bver"] for r in pack if "bver" in r), 10)
    resolved = []
    for record in pack:
        bases.update({k: v for k, v in record.items() if k in _BASES})
        regular = {k: v for k, v in record.items() if k not in _BASES}
        if not regular:
            continue
        out: dict[str, Any] = {"n": bases.get("bn", "") + regular.get("n", "")}
        if "u" in regular or "bu" in bases:
            out["u"] = regular.get("u", bases.get("bu"))
        kinds = [k for k in ("v", "vs", "vb", "vd") if k in regular]
        if kinds == ["v"] or (not kinds and "bv" in bases):
            out["v"] = bases.get("bv", 0) + regular.get("v", 0)
        elif kinds:
            out[kinds[0]] = regular[kinds[0]]
        if "s" in regular or "bs" in bases:
            out["s"] = bases.get("bs", 0) + regular.get("s", 0)
        if "t" in regular or "bt" in bases or now is not None:
            t = bases.get("bt", 0) + regular.get("t", 0)
            out["t"] = now + t if now is not None and t < 2**28 else t
        if "ut" in regular:
            out["ut"] = regular["ut"]
        if version != 10:
            out["bver"] = version
        resolved.append(out)
    return sorted(resolved, key=lambda r: r.get("t", 0))


_NAME = st.from_regex(r"[a-z0-9][a-z0-9:./_-]{0,8}", fullmatch=True)
_NUM = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False, width=64))
_TIME = st.one_of(st.integers(-1000, 1000), st.floats(1.5e9, 1.8e9), st.floats(-100, 100))


@st.composite
def packs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid packs: base fields now and then, one value kind per record (or a sum alone)."""
    version = draw(st.sampled_from([None, 10, 3]))
    out = []
    for i in range(draw(st.integers(0, 8))):
        rec: dict[str, Any] = {}
        if i == 0 and version is not None:
            rec["bver"] = version
        for key, strategy in (("bn", _NAME), ("bt", _TIME), ("bu", st.sampled_from(["W", "Cel", "%"])),
                              ("bv", _NUM), ("bs", _NUM)):
            if draw(st.integers(0, 4)) == 0:
                rec[key] = draw(strategy)
        if i == 0 and "bn" not in rec:
            rec["bn"] = draw(_NAME)
        kind = draw(st.sampled_from(["v", "vs", "vb", "vd", "s", "base-only"]))
        if kind == "base-only":
            out.append(rec)
            continue
        if draw(st.booleans()):
            rec["n"] = draw(_NAME)
        value = {"v": _NUM, "vs": st.text(max_size=5), "vb": st.booleans(), "vd": st.binary(max_size=6),
                 "s": _NUM}[kind]
        rec[kind] = draw(value)
        if kind != "s" and draw(st.integers(0, 3)) == 0:
            rec["s"] = draw(_NUM)
        if draw(st.booleans()):
            rec["t"] = draw(_TIME)
        if draw(st.integers(0, 4)) == 0:
            rec["u"] = draw(st.sampled_from(["W", "Wh", "/"]))
        if draw(st.integers(0, 6)) == 0:
            rec["ut"] = draw(st.integers(1, 3600))
        out.append(rec)
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b and type(a) is type(b))


@_SETTINGS
@given(packs(), st.one_of(st.none(), st.floats(1.6e9, 1.7e9)))
def test_resolution_agrees_with_the_reference(pack: list[dict[str, Any]], now: float | None) -> None:
    ours = senml.resolve(pack, now)
    theirs = reference_resolve(pack, now)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.keys() == b.keys()
        assert all(_same(a[k], b[k]) for k in a), (a, b)


@_SETTINGS
@given(packs())
def test_json_form_is_plain_json(pack: list[dict[str, Any]]) -> None:
    text = senml.encode_json(pack)
    parsed = json.loads(text)  # a general parser
    expected = [{k: (base64.urlsafe_b64encode(v).rstrip(b"=").decode() if k == "vd" else v)
                 for k, v in rec.items()} for rec in pack]
    assert parsed == expected
    assert senml.decode_json(json.dumps(parsed)) == pack
    assert senml.decode_json(text.encode()) == pack


@_SETTINGS
@given(packs())
def test_cbor_form_is_what_cbor2_reads_and_writes(pack: list[dict[str, Any]]) -> None:
    data = senml.encode(pack)
    assert cbor2.loads(data) == senml.to_labels(pack)
    assert senml.from_labels(cbor2.loads(data)) == pack
    assert senml.decode(cbor2.dumps(senml.to_labels(pack))) == pack


def test_cbor2_decimal_fractions_read_as_numbers() -> None:
    from decimal import Decimal

    data = cbor2.dumps([{0: "a", 2: Decimal("273.15")}])
    assert data[6] == 0xC4  # cbor2 writes a Decimal as tag 4
    assert senml.from_labels(cbor2.loads(data)) == [{"n": "a", "v": 273.15}]
    assert senml.decode(data) == [{"n": "a", "v": 273.15}]
