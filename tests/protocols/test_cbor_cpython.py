"""protocols.cbor against PyPI cbor2 (interop both ways, and on the CBOR fuzzer's inputs); CPython only."""

import array
import math
import time
from collections.abc import Mapping

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import cbor, senml
from protocols.cbor import UNDEFINED, Simple, Tag
from protocols.errors import DecodeError
from tools.fuzz import cbor as fuzz

# Tags cbor2 passes through as CBORTag (it gives meaning to 0-5, 25-37, 256-261, 1004, 55799...)
_PLAIN_TAGS = (6, 7, 21, 22, 23, 32, 1000, 40000, 2**32 + 5, 2**64 - 1)
_SETTINGS = settings(max_examples=400, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.too_slow])


def _norm(x, ordered=True):
    """A hashable, type-exact form of a value from either library, for comparisons."""
    if x is None:
        return ("null",)
    if isinstance(x, bool):
        return ("bool", x)
    if isinstance(x, int):
        return ("int", x)
    if isinstance(x, float):
        return ("float", "nan") if math.isnan(x) else ("float", x, math.copysign(1.0, x))
    if isinstance(x, str):
        return ("str", x)
    if isinstance(x, bytes):
        return ("bytes", x)
    if isinstance(x, list | tuple):
        return ("array", tuple(_norm(v, ordered) for v in x))
    if isinstance(x, Mapping):  # cbor2 gives a frozendict inside tags
        items = tuple((_norm(k, ordered), _norm(v, ordered)) for k, v in x.items())
        return ("map", items if ordered else frozenset(items))
    if isinstance(x, Tag | cbor2.CBORTag):
        return ("tag", x.tag, _norm(x.value, ordered))
    if isinstance(x, Simple | cbor2.CBORSimpleValue):
        return ("simple", x.value)
    if x is UNDEFINED or x is cbor2.undefined:
        return ("undefined",)
    raise AssertionError(f"unexpected {type(x).__name__}")


def _to_cbor2(x):
    """Our value model -> cbor2's (Tag, Simple, UNDEFINED have their own classes there)."""
    if isinstance(x, list):
        return [_to_cbor2(v) for v in x]
    if isinstance(x, dict):
        return {k: _to_cbor2(v) for k, v in x.items()}
    if isinstance(x, Tag):
        return cbor2.CBORTag(x.tag, _to_cbor2(x.value))
    if isinstance(x, Simple):
        return cbor2.CBORSimpleValue(x.value)
    if x is UNDEFINED:
        return cbor2.undefined
    return x


def _canonical_order(x):
    """Reorder maps the way cbor2's canonical=True does (shorter encoded key first, then bytes)."""
    if isinstance(x, list):
        return [_canonical_order(v) for v in x]
    if isinstance(x, dict):
        def key(item):
            enc = cbor.dumps(item[0])
            return len(enc), enc
        return {k: _canonical_order(v) for k, v in sorted(x.items(), key=key)}
    if isinstance(x, Tag):
        return Tag(x.tag, _canonical_order(x.value))
    return x


_EDGE_INTS = [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64,
              -1, -24, -25, -256, -257, -(2**32), -(2**64), -(2**64) - 1, 2**200, -(2**200)]
_ints = st.one_of(st.integers(), st.integers(-(2**64) - 2, 2**64 + 2), st.sampled_from(_EDGE_INTS))
_floats = st.one_of(st.floats(), st.floats(width=32), st.floats(width=16))
_scalars = st.one_of(
    st.none(), st.booleans(), _ints, _floats, st.text(max_size=20), st.binary(max_size=20),
    st.just(UNDEFINED), st.builds(Simple, st.integers(0, 19) | st.integers(32, 255)),
)
_keys = st.one_of(st.integers(-(2**70), 2**70), st.text(max_size=6), st.binary(max_size=6))
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(_keys, children, max_size=5),
        st.builds(Tag, st.sampled_from(_PLAIN_TAGS), children),
    ),
    max_leaves=30,
)


@_SETTINGS
@given(_values)
def test_cbor2_decodes_what_we_encode(value):
    """cbor2 reads our encoding back to the same value, map order included."""
    assert _norm(cbor2.loads(cbor.dumps(value))) == _norm(value)


@_SETTINGS
@given(_values)
def test_we_decode_what_cbor2_encodes(value):
    """We read cbor2's default and canonical encodings back to the same value."""
    theirs = _to_cbor2(value)
    assert _norm(cbor.loads(cbor2.dumps(theirs))) == _norm(value)
    assert _norm(cbor.loads(cbor2.dumps(theirs, canonical=True)), False) == _norm(value, False)


@_SETTINGS
@given(_values)
def test_our_bytes_equal_cbor2_canonical_once_maps_are_sorted(value):
    """Preferred serialization: same heads, same float widths, same bignums as cbor2 canonical."""
    value = _canonical_order(value)
    assert cbor.dumps(value) == cbor2.dumps(_to_cbor2(value), canonical=True)


def test_appendix_a_agrees_with_cbor2():
    """Every Appendix A item decodes to the same value in both (semantic tags aside)."""
    from expect import vectors

    compared = 0
    for item in vectors("cbor_appendix_a.json"):
        data = bytes.fromhex(item["hex"])
        if item["hex"] == "f818":
            continue
        ours = cbor.loads(data)
        if isinstance(ours, Tag) and ours.tag in (0, 1, 24, 32):
            continue  # cbor2 turns these into datetime, nested items, URLs
        assert _norm(ours) == _norm(cbor2.loads(data)), item["hex"]
        compared += 1
    assert compared == 76  # 82 less f818 and five tags 0, 1, 1, 24, 32


def test_memoryview_of_any_format_is_raw_bytes():
    words = memoryview(array.array("H", [1, 2]))
    assert cbor.dumps(words) == b"\x44" + bytes(words)
    assert cbor.loads(memoryview(array.array("B", [0x82, 1, 2]))) == [1, 2]


def test_mutation_fuzz_only_decode_errors_and_agrees_with_cbor2():
    """20,000 inputs of the CBOR fuzzer (tools/fuzz/cbor.py): DecodeError or a value, never anything else.

    Where we accept, cbor2 accepts the same value (tags aside, which cbor2 interprets); where
    we refuse, cbor2 refuses too unless the reason is one of our documented extra rules.
    """
    # cbor2.loads ignores trailing bytes, keeps the last of duplicate keys, makes tuples of keys
    extra_rules = ("duplicate map key", "unhashable map key", "nesting deeper", "trailing bytes")
    started = time.monotonic()
    accepted = refused = 0
    for data in fuzz.inputs(20_000, seed=2024):
        try:
            value = cbor.loads(data)
        except DecodeError as exc:
            refused += 1
            if str(exc).startswith("trailing bytes"):
                value, _ = cbor.loads_prefix(data)
                if "Tag(" not in repr(value):
                    assert _norm(cbor2.loads(data)) == _norm(value), data.hex()
            elif not str(exc).startswith(extra_rules):
                try:
                    cbor2.loads(data)
                except (cbor2.CBORDecodeError, ValueError, OverflowError):
                    continue
                raise AssertionError(f"cbor2 accepts {data.hex()}, we said {exc}") from None
            continue
        accepted += 1
        assert repr(cbor.loads(cbor.dumps(value))) == repr(value), data.hex()  # re-encoding keeps the value
        if "Tag(" not in repr(value):
            assert _norm(cbor2.loads(data)) == _norm(value), data.hex()
    assert accepted + refused == 20_000
    assert accepted > 1_000 and refused > 10_000
    assert time.monotonic() - started < 600  # a hang guard only, not a speed assertion


def test_senml_cbor_interoperates_with_cbor2():
    """cbor2 reads the SenML-CBOR we write; packs cbor2 writes decode (as tools/cli.py does)."""
    pack = [{"bn": "urn:dev:mac:0024befffe804ff1:", "bt": 1.7e9, "bu": "W", "n": "p", "v": 1.5},
            {"n": "e", "u": "Wh", "s": 12345.25, "t": -60}, {"n": "on", "vb": True},
            {"n": "fw", "vs": "1.2.3"}, {"n": "raw", "vd": b"\x00\xff"}]
    assert cbor2.loads(senml.encode(pack)) == senml.to_labels(pack)
    for canonical in (False, True):
        data = cbor2.dumps(senml.to_labels(pack), canonical=canonical)
        assert senml.decode(data) == pack
        assert senml.from_labels(cbor2.loads(data)) == pack
    assert list(senml.to_labels(pack)[0]) == [-2, -3, -4, 0, 2]  # the order encode() writes
