# common-subset
"""protocols.senml on both interpreters: RFC 8428 examples, CBOR labels, resolution, rejections."""
import binascii

from expect import raises

from protocols import cbor, senml
from protocols.errors import DecodeError

_DEV = "urn:dev:ow:10e2073a01080063"

# RFC 8428 5.1.1: a single datapoint
SINGLE = [{"n": _DEV, "u": "Cel", "v": 23.1}]

# RFC 8428 5.1.2: multiple datapoints under a base name
MULTIPLE = [
    {"bn": _DEV + ":", "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "u": "A", "v": 1.2},
]

# RFC 8428 5.1.3: multiple measurements with base name, base time, base unit and version
_BN = "urn:dev:ow:10e2073a0108006:"
MEASUREMENTS = [
    {"bn": _BN, "bt": 1.276020076001e09, "bu": "A", "bver": 5,
     "n": "voltage", "u": "V", "v": 120.1},
    {"n": "current", "t": -5, "v": 1.2},
    {"n": "current", "t": -4, "v": 1.3},
    {"n": "current", "t": -3, "v": 1.4},
    {"n": "current", "t": -2, "v": 1.5},
    {"n": "current", "t": -1, "v": 1.6},
    {"n": "current", "v": 1.7},
]


def _h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def _hex(data):
    return binascii.hexlify(data).decode()


def test_label_table_is_rfc_8428_section_6():
    assert senml.LABELS == {"bver": -1, "bn": -2, "bt": -3, "bu": -4, "bv": -5, "bs": -6,
                            "n": 0, "u": 1, "v": 2, "vs": 3, "vb": 4, "s": 5, "t": 6, "ut": 7,
                            "vd": 8}
    assert senml.NAMES[-2] == "bn" and senml.NAMES[8] == "vd" and len(senml.NAMES) == 15


def test_smallest_record_has_the_expected_bytes():
    assert _hex(senml.encode([{"n": "x", "v": 1}])) == "81a200617802 01".replace(" ", "")
    assert senml.to_labels([{"n": "x", "v": 1}]) == [{0: "x", 2: 1}]
    assert senml.decode(_h("81a2006178 0201")) == [{"n": "x", "v": 1}]


def test_rfc_examples_round_trip_through_cbor():
    for pack in (SINGLE, MULTIPLE, MEASUREMENTS):
        data = senml.encode(pack)
        assert senml.decode(data) == pack
        assert senml.from_labels(cbor.loads(data)) == pack
        assert cbor.loads(data) == senml.to_labels(pack)


def test_rfc_5_1_3_cbor_matches_the_rfc_bytes():
    # the opening bytes of the RFC 8428 section 6 example: bn, bt, bu, bver, n, u, v, then n, t, v
    data = senml.encode(MEASUREMENTS)
    head = ("87 a7 21 78 1b" + _hex(_BN.encode()) + "22 fb 41 d3 03 a1 5b 00 10 62"
            "23 61 41 20 05 00 67" + _hex(b"voltage") + "01 61 56 02 fb 40 5e 06 66 66 66 66 66"
            "a3 00 67" + _hex(b"current") + "06 24 02 fb 3f f3 33 33 33 33 33 33")
    head = head.replace(" ", "")
    assert _hex(data).startswith(head)
    assert _hex(data).endswith("a2 00 67".replace(" ", "") + _hex(b"current")
                               + "02fb3ffb333333333333")
    # t = -4, -3, -1 carry doubles (22 bytes), 1.5 at t = -2 is a half (16), the last has no t (20)
    assert len(data) == len(head) // 2 + 3 * 22 + 16 + 20


def test_resolve_single_and_multiple_datapoints():
    assert senml.resolve(SINGLE) == [{"n": _DEV, "u": "Cel", "v": 23.1}]
    assert senml.resolve(MULTIPLE) == [
        {"n": _DEV + ":voltage", "u": "V", "v": 120.1},
        {"n": _DEV + ":current", "u": "A", "v": 1.2},
    ]


def test_resolve_keeps_the_version_and_puts_records_in_time_order():
    # RFC 8428 5.1.2's second example: version 5, so every resolved record says so (section 4.6), and
    # the currents of the five seconds before come before the voltage at the base time
    resolved = senml.resolve(MEASUREMENTS)
    bt = 1.276020076001e09
    assert [r["t"] for r in resolved] == [bt - 5, bt - 4, bt - 3, bt - 2, bt - 1, bt, bt]
    assert resolved[5] == {"n": _BN + "voltage", "u": "V", "v": 120.1, "t": bt, "bver": 5}
    assert resolved[0] == {"n": _BN + "current", "u": "A", "v": 1.2, "t": bt - 5, "bver": 5}
    assert resolved[6]["v"] == 1.7 and resolved[6]["n"] == _BN + "current"  # same instant: pack order
    assert all(r["u"] == "A" and r["bver"] == 5 for r in resolved if r is not resolved[5])
    assert all("bn" not in r and "bt" not in r and "bu" not in r for r in resolved)
    # version 10 (given or by default) is not written into resolved records
    assert senml.resolve([{"bver": 10, "n": "a", "v": 1}]) == [{"n": "a", "v": 1}]


def test_resolve_relative_times_base_value_and_sum():
    # section 4.5.4: a missing value or sum counts as zero beside a base value or base sum
    pack = [
        {"bn": "lamp7/", "bv": 100, "bs": 1000, "n": "power", "u": "W", "v": 5, "t": -10},
        {"n": "energy", "u": "Wh", "s": 20},
        {"n": "state", "vb": True, "t": 0, "ut": 60},
        {"bn": "", "n": "note", "vs": "ok", "bu": "x"},
        {"n": "blob", "vd": b"\x00\x01"},
    ]
    assert senml.resolve(pack) == [
        {"n": "lamp7/power", "u": "W", "v": 105, "s": 1000, "t": -10},
        {"n": "lamp7/energy", "u": "Wh", "v": 100, "s": 1020},
        {"n": "lamp7/state", "vb": True, "s": 1000, "t": 0, "ut": 60},
        {"n": "note", "u": "x", "vs": "ok", "s": 1000},
        {"n": "blob", "u": "x", "vd": b"\x00\x01", "s": 1000},
    ]
    now = 1700000000
    resolved = senml.resolve(pack, now)
    assert [r["t"] for r in resolved] == [now - 10, now, now, now, now]
    absolute = senml.resolve([{"n": "a", "v": 1, "t": 1700000000.5}], now=5)
    assert absolute[0]["t"] == 1700000000.5  # at or above 2**28: absolute, left alone
    assert senml.resolve([{"bt": -5, "n": "a", "v": 1}], now=100)[0]["t"] == 95
    # a base value alone gives the value; a base sum alone the sum
    assert senml.resolve([{"bn": "m/", "bv": 7}, {"n": "a"}]) == [{"n": "m/a", "v": 7}]
    assert senml.resolve([{"bn": "m/", "bs": 7}, {"n": "a"}]) == [{"n": "m/a", "s": 7}]


def test_a_record_of_base_fields_only_yields_nothing():
    # RFC 8428 5.1.7: the thermostat's first record only sets the base name
    thermostat = [
        {"bn": "urn:dev:ow:10e2073a01080063:"},
        {"n": "temp", "u": "Cel", "v": 23.1},
        {"n": "heat", "u": "/", "v": 1},
        {"n": "fan", "u": "/", "v": 0},
    ]
    assert senml.resolve(thermostat) == [
        {"n": _DEV + ":temp", "u": "Cel", "v": 23.1},
        {"n": _DEV + ":heat", "u": "/", "v": 1},
        {"n": _DEV + ":fan", "u": "/", "v": 0},
    ]
    assert senml.resolve([{"bn": "a", "bt": 1e9, "bu": "W", "bv": 1, "bs": 2, "bver": 10}]) == []


def test_names_follow_the_rfc_charset():
    for good in ("a", "0", "urn:dev:mac:0024befffe804ff1:temp", "A-b.c/d_e:f"):
        assert senml.valid_name(good), good
    for bad in ("", "-a", ":a", "_a", "a b", "a#b", "caf\u00e9", "a\x00"):
        assert not senml.valid_name(bad), bad
        raises(DecodeError, senml.resolve, [{"n": bad, "v": 1}])
    raises(DecodeError, senml.resolve, [{"v": 1}])  # no name at all
    assert senml.resolve([{"bn": "only-base", "v": 1}]) == [{"n": "only-base", "v": 1}]


def test_a_record_needs_exactly_one_value():
    exc = raises(DecodeError, senml.resolve, [{"n": "a", "v": 1, "vs": "x"}])
    assert "more than one value: v, vs" in str(exc)
    raises(DecodeError, senml.resolve, [{"n": "a", "vb": False, "vd": b""}])
    raises(DecodeError, senml.resolve, [{"n": "a", "u": "W"}])
    assert senml.resolve([{"n": "a", "v": 1, "s": 2}]) == [{"n": "a", "v": 1, "s": 2}]


def test_unknown_labels_are_ignored_unless_must_understand():
    # section 4.4: unknown fields are ignored; a label ending in "_" is an error
    assert senml.from_labels([{0: "a", 2: 1, "ext": 5}]) == [{"n": "a", "v": 1}]
    assert senml.decode(cbor.dumps([{0: "a", 2: 1, "ext": [1, 2]}])) == [{"n": "a", "v": 1}]
    exc = raises(DecodeError, senml.from_labels, [{0: "a", 2: 1, "rt_": 5}])
    assert "must-understand" in str(exc) and "'rt_'" in str(exc)
    raises(DecodeError, senml.decode, cbor.dumps([{0: "a", 2: 1, "foo_": 1}]))
    # section 6: the integer labels are conclusive, so an unknown one is malformed
    exc = raises(DecodeError, senml.from_labels, [{0: "a", 2: 1, 23: 5}])
    assert "unknown label 23" in str(exc)
    assert senml.from_labels([{"n": "a", 2: 1}]) == [{"v": 1}]  # a text "n" is an extension in CBOR
    raises(DecodeError, senml.from_labels, [{True: "A", 0: "a", 2: 1}])
    raises(DecodeError, senml.from_labels, [{0.0: "a", 2: 1}])
    assert senml.decode_json('[{"n":"a","v":1,"ext":{"x":1}}]') == [{"n": "a", "v": 1}]
    exc = raises(DecodeError, senml.decode_json, '[{"n":"a","v":1,"rt_":1}]')
    assert "must-understand" in str(exc)
    assert senml.resolve([{"n": "a", "v": 1, "ext": 2}]) == [{"n": "a", "v": 1}]
    # what this side writes is never dropped silently
    raises(ValueError, senml.encode, [{"n": "a", "v": 1, "x_": 2}])
    raises(ValueError, senml.to_labels, [{"n": "a", "value": 1}])
    raises(ValueError, senml.encode_json, [{"n": "a", "value": 1}])


def test_records_of_one_pack_have_one_version():
    raises(DecodeError, senml.from_labels, [{-1: 5, 0: "a", 2: 1}, {-1: 6, 0: "b", 2: 1}])
    raises(DecodeError, senml.decode_json, '[{"n":"a","v":1},{"bver":5,"n":"b","v":1}]')
    assert len(senml.resolve([{"bver": 5, "n": "a", "v": 1}, {"bver": 5, "n": "b", "v": 2}])) == 2


def test_decimal_fractions_are_numbers():
    # section 6: a number may be a decimal fraction, tag 4 [exponent, mantissa]: 273.15 = 27315e-2
    data = _h("81 a2 00 61 61 02 c4 82 21 19 6a b3")
    assert senml.decode(data) == [{"n": "a", "v": 27315 / 100}]
    assert senml.decode(_h("81 a2 00 61 61 02 c4 82 01 03")) == [{"n": "a", "v": 30}]
    raises(DecodeError, senml.decode, _h("81 a2 00 61 61 02 c4 82 21 61 78"))  # mantissa not an int
    raises(DecodeError, senml.decode, _h("81 a2 00 61 61 02 c1 00"))  # another tag is not a number


def test_wrong_types_are_refused():
    bad_records = [
        {-2: 5, 2: 1}, {0: b"a", 2: 1}, {0: "a", 2: "1"}, {0: "a", 2: True}, {0: "a", 3: 1},
        {0: "a", 4: 1}, {0: "a", 8: "base64"}, {0: "a", 2: 1, 6: "now"}, {0: "a", 1: 5, 2: 1},
        {-1: 0, 0: "a", 2: 1}, {-1: 1.5, 0: "a", 2: 1}, {-1: 11, 0: "a", 2: 1},
        {-5: None, 0: "a", 2: 1}, {0: "a", 5: [1]},
    ]
    for labelled in bad_records:
        raises(DecodeError, senml.from_labels, [labelled])
        raises(DecodeError, senml.decode, cbor.dumps([labelled]))
    exc = raises(DecodeError, senml.from_labels, [{-1: 11, 0: "a", 2: 1}])
    assert "version 11" in str(exc)
    exc = raises(DecodeError, senml.from_labels, [{0: "a", 2: "1"}])
    assert str(exc) == "SenML record 0: v must be a number, not str"
    raises(ValueError, senml.encode, [{"n": "a", "v": "1"}])
    raises(ValueError, senml.encode, [{"n": "a", "vb": 1}])


def test_not_a_list_of_maps_is_refused():
    raises(DecodeError, senml.from_labels, ({0: "a", 2: 1},))  # a tuple is not what CBOR gives
    for obj in ({0: "a"}, "pack", 5, None, [[0, "a"]], [5]):
        raises(DecodeError, senml.from_labels, obj)
        raises(DecodeError, senml.decode, cbor.dumps(obj))
    raises(DecodeError, senml.decode, b"\x81")  # truncated CBOR
    raises(DecodeError, senml.decode, b"\x80\x00")  # trailing bytes
    raises(ValueError, senml.encode, {"n": "a", "v": 1})
    raises(ValueError, senml.encode, ["n"])
    raises(DecodeError, senml.resolve, {"n": "a", "v": 1})
    assert senml.decode(b"\x80") == [] and senml.encode([]) == b"\x80"


def test_all_value_kinds_round_trip():
    pack = [{"bn": "n1/", "bt": 1700000000, "bu": "W", "bv": 0.5, "bs": 10, "bver": 10,
             "n": "a", "u": "Wh", "v": -3, "s": 2.25, "t": 1.5, "ut": 30},
            {"n": "b", "vs": "text \u20ac"}, {"n": "c", "vb": False}, {"n": "d", "vd": b"\xff\x00"}]
    data = senml.encode(pack)
    assert senml.decode(data) == pack
    labelled = cbor.loads(data)
    assert labelled[0] == {-2: "n1/", -3: 1700000000, -4: "W", -5: 0.5, -6: 10, -1: 10,
                           0: "a", 1: "Wh", 2: -3, 5: 2.25, 6: 1.5, 7: 30}
    assert data[:3] == b"\x84\xac\x21"  # bn is written first whatever the dict order
