# common-subset
"""protocols.cbor on CPython and MicroPython: RFC 8949 Appendix A, rejections, limits."""
import binascii
import math
import struct

from expect import raises, vectors

from protocols import cbor
from protocols.cbor import UNDEFINED, Simple, Tag, dumps, loads, loads_prefix
from protocols.errors import DecodeError

_INF = float("inf")


def _h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def _hex(data):
    return binascii.hexlify(data).decode()


# Appendix A items given only in diagnostic notation, as Python values; None marks a rejection.
_DIAGNOSTIC = {
    "f97c00": _INF, "fa7f800000": _INF, "fb7ff0000000000000": _INF,
    "f9fc00": -_INF, "faff800000": -_INF, "fbfff0000000000000": -_INF,
    "f7": UNDEFINED,
    "f0": Simple(16),
    "f818": None,
    "f8ff": Simple(255),
    "c074323031332d30332d32315432303a30343a30305a": Tag(0, "2013-03-21T20:04:00Z"),
    "c11a514b67b0": Tag(1, 1363896240),
    "c1fb41d452d9ec200000": Tag(1, 1363896240.5),
    "d74401020304": Tag(23, b"\x01\x02\x03\x04"),
    "d818456449455446": Tag(24, b"dIETF"),
    "d82076687474703a2f2f7777772e6578616d706c652e636f6d": Tag(32, "http://www.example.com"),
    "40": b"",
    "4401020304": b"\x01\x02\x03\x04",
    "a201020304": {1: 2, 3: 4},
    "5f42010243030405ff": b"\x01\x02\x03\x04\x05",
}
_NAN_ITEMS = ("f97e00", "fa7fc00000", "fb7ff8000000000000")
_NAN = object()
# MicroPython dicts do not keep insertion order, so a decoded map re-encodes in hash order
_ORDERED_DICTS = list(loads(_h("a6050004000300020001000000"))) == [5, 4, 3, 2, 1, 0]


def _same(got, want):
    # equality that also tells int from float, -0.0 from 0.0 and bool from int
    if isinstance(want, float):
        return isinstance(got, float) and got == want and dumps(got) == dumps(want)
    if isinstance(want, list):
        return (isinstance(got, list) and len(got) == len(want)
                and all(_same(got[i], want[i]) for i in range(len(want))))
    if isinstance(want, dict):
        return (isinstance(got, dict) and len(got) == len(want)
                and all(k in got and _same(got[k], want[k]) for k in want))
    return type(got) is type(want) and got == want


def _expected(item):
    if "decoded" in item:
        return True, item["decoded"]
    h = item["hex"]
    if h in _NAN_ITEMS:
        return True, _NAN
    assert h in _DIAGNOSTIC, "no expectation for " + h + " " + item["diagnostic"]
    want = _DIAGNOSTIC[h]
    return want is not None, want


def test_appendix_a_decodes_every_item():
    items = vectors("cbor_appendix_a.json")
    assert len(items) == 82
    decoded = rejected = 0
    for item in items:
        data = _h(item["hex"])
        ok, want = _expected(item)
        if not ok:
            raises(DecodeError, loads, data)
            rejected += 1
            continue
        got = loads(data)
        if want is _NAN:
            assert isinstance(got, float) and math.isnan(got), item["hex"]
        else:
            assert _same(got, want), "{}: {!r} != {!r}".format(item["hex"], got, want)
        decoded += 1
    assert (decoded, rejected) == (81, 1)


def test_appendix_a_reencodes_roundtrip_items():
    exact = reordered = 0
    for item in vectors("cbor_appendix_a.json"):
        if not item["roundtrip"] or item["hex"] == "f818":
            continue
        data = _h(item["hex"])
        out = dumps(loads(data))
        if out == data:
            exact += 1
            continue
        # only a multi-entry map may differ, and only by key order, where dicts are unordered
        assert not _ORDERED_DICTS and item["hex"][0] == "a", item["hex"]
        assert sorted(out) == sorted(data) and loads(out) == loads(data), item["hex"]
        reordered += 1
    assert exact + reordered == 64  # 65 roundtrip items, less f818
    assert reordered == 0 or not _ORDERED_DICTS


def test_appendix_a_non_roundtrip_items_reencode_to_preferred_form():
    cases = {
        "fa7f800000": "f97c00", "fb7ff8000000000000": "f97e00",
        "9fff": "80", "7f657374726561646d696e67ff": "6973747265616d696e67",
        "bf6346756ef563416d7421ff": "a26346756ef563416d7421",
    }
    for src, preferred in cases.items():
        assert _hex(dumps(loads(_h(src)))) == preferred


def test_appendix_a_every_strict_prefix_is_truncated():
    count = 0
    for item in vectors("cbor_appendix_a.json"):
        data = _h(item["hex"])
        for cut in range(len(data)):
            exc = raises(DecodeError, loads, data[:cut])
            assert str(exc).startswith("truncated"), (item["hex"], cut, str(exc))
            count += 1
    assert count > 400


def test_f818_is_rejected_as_not_well_formed():
    for n in range(24, 32):
        exc = raises(DecodeError, loads, bytes([0xF8, n]))
        assert f"simple value {n}" in str(exc)
    assert loads(_h("f820")) == Simple(32)
    assert [loads(bytes([b])) for b in range(0xF0, 0xF4)] == [Simple(16), Simple(17),
                                                              Simple(18), Simple(19)]


def test_big_integers_use_tags_2_and_3():
    assert _hex(dumps(2**64 - 1)) == "1bffffffffffffffff"
    assert _hex(dumps(-(2**64))) == "3bffffffffffffffff"
    assert _hex(dumps(2**64)) == "c249010000000000000000"
    assert _hex(dumps(-(2**64) - 1)) == "c349010000000000000000"
    for n in (2**200, -(2**200), 2**64 + 12345, -(2**70) + 3, 2**63, -(2**63) - 1):
        assert loads(dumps(n)) == n
    assert loads(_h("c240")) == 0  # an empty bignum is zero
    assert loads(_h("c34100")) == -1
    raises(DecodeError, loads, _h("c201"))  # a bignum must wrap a byte string


def test_floats_take_the_shortest_exact_width():
    cases = [(1.5, "f93e00"), (65504.0, "f97bff"), (65536.0, "fa47800000"),
             (-0.0, "f98000"), (0.0, "f90000"), (5.960464477539063e-08, "f90001"),
             (2.9802322387695312e-08, "fa33000000"), (1.1, "fb3ff199999999999a"),
             (float("nan"), "f97e00"), (-_INF, "f9fc00"), (3.4028234663852886e38, "fa7f7fffff")]
    for value, want in cases:
        assert _hex(dumps(value)) == want, (value, want)
    assert _hex(dumps(1e300)) == "fb7e37e43c8800759c"


def test_half_precision_conversion_is_exact_both_ways():
    for h in range(0x7C01):  # every finite half and +inf, both signs
        for bits in (h, h | 0x8000):
            f = cbor._half_to_float(bits)
            assert cbor._half_bits(f) == bits, hex(bits)
    assert cbor._half_bits(65505.0) == -1
    assert cbor._half_bits(1.0 + 2.0**-11) == -1
    assert cbor._half_bits(2.0**-25) == -1
    assert math.isnan(cbor._half_to_float(0x7E01))


def test_containers_nest_and_round_trip():
    value = {"a": [1, [2, [3, {"b": b"\x00"}]]], 7: (True, False, None), -3: "x" * 300,
             b"k": [UNDEFINED, Simple(200), Tag(1000, [1.5])], "big": [2**64] * 3}
    back = loads(dumps(value))
    assert back["a"] == [1, [2, [3, {"b": b"\x00"}]]]
    assert back[7] == [True, False, None]
    assert back[-3] == "x" * 300
    assert back[b"k"] == [UNDEFINED, Simple(200), Tag(1000, [1.5])]
    assert sorted(str(k) for k in back) == ["-3", "7", "a", "b'k'", "big"]
    assert _hex(dumps(bytearray(b"\x01\x02"))) == "420102"
    assert _hex(dumps(memoryview(b"\x01\x02\x03")[1:])) == "420203"
    assert _hex(dumps([])) == "80" and _hex(dumps({})) == "a0"
    assert len(dumps(list(range(300)))) == 3 + 24 + 2 * (256 - 24) + 3 * (300 - 256)


def test_depth_is_bounded_on_both_sides():
    deep = 0
    for _ in range(cbor.MAX_DEPTH):
        deep = [deep]
    assert loads(dumps(deep)) == deep
    raises(ValueError, dumps, [deep])
    loop = []
    loop.append(loop)
    raises(ValueError, dumps, loop)
    exc = raises(DecodeError, loads, b"\x81" * 33 + b"\x00")
    assert "nesting deeper than 32" in str(exc)
    raises(DecodeError, loads, b"\xc6" * 40 + b"\x00")
    raises(DecodeError, loads, b"\x9f" * 1000)
    raises(DecodeError, loads, b"\x81\x81\x00", 1)
    assert loads(b"\x81\x00", 1) == [0]


def test_invalid_utf8_is_refused():
    for text in ("61ff", "6180", "62c080", "63eda080", "64f4908080", "62c3", "7f61c361bcff",
                 "63e282ac"[:-2] + "41"):
        raises(DecodeError, loads, _h(text))
    assert cbor.utf8_error(b"ok \xe2\x82\xac \xf0\x90\x85\x91") == -1
    assert cbor.utf8_error(b"ab\xed\xbf\xbf") == 2
    assert cbor.utf8_error(b"\xf0\x8f\xbf\xbf") == 0


def test_duplicate_and_unhashable_map_keys_are_refused():
    assert "duplicate map key 1" in str(raises(DecodeError, loads, _h("a201020103")))
    raises(DecodeError, loads, _h("a2616101616102"))
    raises(DecodeError, loads, _h("bf01020103ff"))
    raises(DecodeError, loads, _h("a1800a"))  # an array as key
    raises(DecodeError, loads, _h("a1c1800a"))  # a tagged array as key


def test_declared_lengths_are_checked_before_allocating():
    for text in ("5bffffffffffffffff", "7b7fffffffffffffff", "9b0000000100000000",
                 "bbffffffffffffffff", "ba7fffffff", "5a000100000102"):
        exc = raises(DecodeError, loads, _h(text))
        assert str(exc).startswith("truncated"), str(exc)
    exc = raises(DecodeError, loads, _h("1900"))
    assert str(exc) == "truncated at offset 1: need 1 more bytes for uint16"


def test_malformed_heads_and_breaks_are_refused():
    for major in range(8):
        for ai in (28, 29, 30):
            exc = raises(DecodeError, loads, bytes([major << 5 | ai]))
            assert f"reserved additional information {ai}" in str(exc)
    for text in ("1f", "3f", "df", "ff", "81ff", "a101ff", "bf01ff", "c1ff",
                 "5f6161ff", "5f5f4100ffff", "5f01ff", "7f4161ff", "7f7f6161ffff"):
        raises(DecodeError, loads, _h(text))


def test_trailing_bytes_and_streaming():
    exc = raises(DecodeError, loads, _h("0102"))
    assert str(exc) == "trailing bytes at offset 1: 1 bytes after the item"
    stream = dumps(1) + dumps([2, "x"]) + dumps({"k": 2.5})
    items = []
    pos = 0
    while pos < len(stream):
        obj, pos = loads_prefix(stream, pos)
        items.append(obj)
    assert items == [1, [2, "x"], {"k": 2.5}]
    assert loads_prefix(memoryview(stream), 1) == ([2, "x"], 5)
    assert loads(bytearray(b"\x83\x01\x02\x03")) == [1, 2, 3]
    raises(TypeError, loads, "00")
    raises(ValueError, loads_prefix, b"\x00", 2)


def test_unsupported_types_and_values_raise_clear_errors():
    exc = raises(TypeError, dumps, {1, 2})
    assert "set" in str(exc)
    raises(TypeError, dumps, [object()])
    raises(ValueError, Simple, 24)
    raises(ValueError, Simple, 256)
    raises(ValueError, Tag, -1, 0)
    raises(ValueError, Tag, 2**64, 0)


def test_tag_simple_undefined_behave_as_values():
    assert Tag(1, [1]) == Tag(1, [1]) and Tag(1, 2) != Tag(2, 2) and Tag(1, 2) != 2
    assert hash(Tag(1, "a")) == hash(Tag(1, "a"))
    assert repr(Tag(0, "x")) == "Tag(0, 'x')"
    assert Simple(16) == Simple(16) and Simple(16) != Simple(17)
    assert repr(Simple(16)) == "Simple(16)"
    assert repr(UNDEFINED) == "UNDEFINED" and not UNDEFINED
    assert _hex(dumps([UNDEFINED, Simple(16), Simple(255), Tag(2**64 - 1, None)])) == (
        "84f7f0f8ffdbfffffffffffffffff6")
    assert loads(dumps(Tag(2, b"\x01\x00"))) == 256  # tag 2 is always read as an integer


def test_mutated_encodings_raise_only_decode_error():
    # a small deterministic mutation fuzz that runs on both interpreters
    seeds = [dumps(v) for v in ([1, -2, "tå", b"\x00", 1.5, None], {"a": [2**64, Tag(5, 1)]},
                                [1.1, 100000.0, {"n": "x", "v": 2}])]
    seeds.append(_h("bf61610161629f0203ffff"))
    seeds.append(_h("7f657374726561646d696e67ff"))
    state = 12345
    refused = 0
    for seed in seeds:
        for _ in range(150):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            data = bytearray(seed)
            i = state % len(data)
            data[i] ^= 1 << ((state >> 8) % 8)
            if state & 0x100000:
                data = data[: (state >> 12) % len(data)]
            try:
                loads(data)
            except DecodeError:
                refused += 1
    assert 0 < refused < 750


def test_encode_into_one_buffer():
    out = bytearray(b"\xaa")
    assert cbor.dump_into([1, "a"], out) is out
    assert _hex(out) == "aa82016161"
    assert struct.unpack(">H", dumps(1000)[1:])[0] == 1000
    out = cbor.dump_head(bytearray(), 5, 2)
    for key in ("z", "a"):  # a fixed key order, whatever the interpreter's dict order
        cbor.dump_into(key, out)
        cbor.dump_into(0, out)
    assert _hex(out) == "a2617a00616100"
    assert _hex(cbor.dump_head(bytearray(), 7, 25)) == "f819"
    raises(ValueError, cbor.dump_head, bytearray(), 8, 0)
