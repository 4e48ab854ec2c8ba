# common-subset
"""protocols.cbor's core deterministic encoding (RFC 8949 section 4.2.1), on both interpreters."""
import binascii

from protocols import cbor


def _hex(data):
    return binascii.hexlify(data).decode()


def test_rfc_8949_example_key_order():
    # section 4.2.1 lists these keys in their correct order: 10, 100, -1, "z", "aa", [100], [-1], false
    keys = [False, (-1,), (100,), "aa", "z", -1, 100, 10]
    m = {}
    for i, key in enumerate(keys):
        m[key] = i
    data = cbor.dumps(m, True)
    assert _hex(data) == ("a8" "0a07" "186406" "2005" "617a04" "62616103" "81186402" "812001" "f400")


def test_insertion_order_does_not_matter():
    a = {}
    b = {}
    items = [("lamp", 1), ("id", "c-1"), (-1, 2), (1000, 3), ("params", {"z": 1, "level": 40, "a": [1, 2]})]
    for key, value in items:
        a[key] = value
    for key, value in reversed(items):
        b[key] = value
    assert cbor.dumps(a, True) == cbor.dumps(b, True)
    # 1000 (0x1903e8) sorts before -1 (0x20): bytewise, not shorter-first
    assert cbor.dumps({-1: 0, 1000: 0}, True) == binascii.unhexlify("a21903e8002000")


def test_deterministic_output_decodes_to_the_same_value():
    value = {"b": [1.5, None, True, b"\x00"], "a": {2: "x", 1: -(2**70)}, 3: cbor.Tag(1, 1700000000)}
    assert cbor.loads(cbor.dumps(value, True)) == value


def test_nested_maps_in_arrays_and_tags_are_sorted_too():
    assert _hex(cbor.dumps([{"b": 1, "a": 2}], True)) == "81a2616102616201"
    assert _hex(cbor.dumps(cbor.Tag(6, {"b": 1, "a": 2}), True)) == "c6a2616102616201"
