# common-subset
"""protocols.senml's JSON form (RFC 8428 section 5) and the RFC's own examples, on both interpreters."""
import binascii

from expect import raises

from protocols import senml
from protocols.errors import DecodeError

_DEV = "urn:dev:ow:10e2073a01080063"

# RFC 8428 5.1.3, as printed
MEASUREMENTS_5_1_3 = """[
  {"bn":"urn:dev:ow:10e2073a01080063","bt":1.320067464e+09,
   "bu":"%RH","v":20},
  {"u":"lon","v":24.30621},
  {"u":"lat","v":60.07965},
  {"t":60,"v":20.3},
  {"u":"lon","t":60,"v":24.30622},
  {"u":"lat","t":60,"v":60.07965},
  {"t":120,"v":20.7},
  {"u":"lon","t":120,"v":24.30623},
  {"u":"lat","t":120,"v":60.07966},
  {"u":"%EL","t":150,"v":98},
  {"t":180,"v":21.2},
  {"u":"lon","t":180,"v":24.30628},
  {"u":"lat","t":180,"v":60.07967}
]"""

# RFC 8428 5.1.4: the same, resolved, as printed
RESOLVED_5_1_4 = """[
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067464e+09,
   "v":20},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067464e+09,
   "v":24.30621},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067464e+09,
   "v":60.07965},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067524e+09,
   "v":20.3},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067524e+09,
   "v":24.30622},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067524e+09,
   "v":60.07965},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067584e+09,
   "v":20.7},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067584e+09,
   "v":24.30623},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067584e+09,
   "v":60.07966},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%EL","t":1.320067614e+09,
   "v":98},
  {"n":"urn:dev:ow:10e2073a01080063","u":"%RH","t":1.320067644e+09,
   "v":21.2},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lon","t":1.320067644e+09,
   "v":24.30628},
  {"n":"urn:dev:ow:10e2073a01080063","u":"lat","t":1.320067644e+09,
   "v":60.07967}
]"""

# RFC 8428 5.1.2 (second example) and section 6: the JSON and the CBOR dump of the same pack
VOLTAGE_JSON = """[
  {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
   "bu":"A","bver":5,
   "n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7}
]"""
VOLTAGE_CBOR = (
    "87 a7 21 78 1b 75 72 6e 3a 64 65 76 3a 6f 77 3a 31 30 65 32 30 37 33 61 30 31 30 38 30 30 36 3a"
    "22 fb 41 d3 03 a1 5b 00 10 62 23 61 41 20 05 00 67 76 6f 6c 74 61 67 65 01 61 56 02 fb 40 5e 06"
    "66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06 24 02 fb 3f f3 33 33 33 33 33 33 a3 00 67 63 75"
    "72 72 65 6e 74 06 23 02 fb 3f f4 cc cc cc cc cc cd a3 00 67 63 75 72 72 65 6e 74 06 22 02 fb 3f"
    "f6 66 66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06 21 02 f9 3e 00 a3 00 67 63 75 72 72 65 6e"
    "74 06 20 02 fb 3f f9 99 99 99 99 99 9a a3 00 67 63 75 72 72 65 6e 74 06 00 02 fb 3f fb 33 33 33"
    "33 33 33"
)

# RFC 8428 5.1.5, 5.1.6 and 5.1.7, as printed
DATA_TYPES = """[
    {"bn":"urn:dev:ow:10e2073a01080063:","n":"temp","u":"Cel","v":23.1},
    {"n":"label","vs":"Machine Room"},
    {"n":"open","vb":false},
    {"n":"nfv-reader","vd":"aGkgCg"}
  ]"""
COLLECTION = """[
     {"bn":"2001:db8::2/","bt":1.320078429e+09,
      "n":"temperature","u":"Cel","v":25.2},
     {"n":"humidity","u":"%RH","v":30},
     {"bn":"2001:db8::1/","n":"temperature","u":"Cel","v":12.3},
     {"n":"humidity","u":"%RH","v":67}
   ]"""
THERMOSTAT = """[
     {"bn":"urn:dev:ow:10e2073a01080063:"},
     {"n":"temp","u":"Cel","v":23.1},
     {"n":"heat","u":"/","v":1},
     {"n":"fan","u":"/","v":0}
   ]"""
LIGHTS_ON = """[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":1},
     {"n":"2001:db8::4","v":1}
   ]"""
LIGHTS_OFF = """[
     {"bt":1.320078429e+09,"bu":"/","n":"2001:db8::3","v":0.5},
     {"n":"2001:db8::4","v":0.5},
     {"n":"2001:db8::3","t":0.1,"v":0},
     {"n":"2001:db8::4","t":0.1,"v":0}
   ]"""
SINGLE = '[\n     {"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}\n   ]'
MULTIPLE = """[
  {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},
  {"n":"current","u":"A","v":1.2}
]"""
EXAMPLES = (SINGLE, MULTIPLE, VOLTAGE_JSON, MEASUREMENTS_5_1_3, RESOLVED_5_1_4, DATA_TYPES, COLLECTION,
            THERMOSTAT, LIGHTS_ON, LIGHTS_OFF)


def _h(text):
    return binascii.unhexlify(text.replace(" ", ""))


def test_every_json_example_decodes_and_round_trips_through_both_forms():
    for text in EXAMPLES:
        pack = senml.decode_json(text)
        assert senml.decode_json(senml.encode_json(pack)) == pack
        assert senml.decode(senml.encode(pack)) == pack


def test_5_1_3_resolves_exactly_to_5_1_4():
    assert senml.resolve(senml.decode_json(MEASUREMENTS_5_1_3)) == senml.decode_json(RESOLVED_5_1_4)
    # resolved records resolve to themselves
    resolved = senml.decode_json(RESOLVED_5_1_4)
    assert senml.resolve(resolved) == resolved


def test_the_section_6_cbor_dump_is_the_json_example():
    # the dump writes the last record's time as 0, which the JSON leaves out: the same value
    pack = senml.decode_json(VOLTAGE_JSON)
    pack[-1]["t"] = 0
    assert senml.encode(pack) == _h(VOLTAGE_CBOR)
    assert senml.decode(_h(VOLTAGE_CBOR)) == pack
    assert senml.resolve(senml.decode(_h(VOLTAGE_CBOR))) == senml.resolve(senml.decode_json(VOLTAGE_JSON))


def test_data_types_example():
    pack = senml.decode_json(DATA_TYPES)
    assert pack[3] == {"n": "nfv-reader", "vd": b"hi \n"}
    assert pack[2] == {"n": "open", "vb": False}
    assert '"vd":"aGkgCg"' in senml.encode_json(pack)
    assert senml.resolve(pack)[1] == {"n": _DEV + ":label", "vs": "Machine Room"}


def test_collection_takes_the_newest_base_name_and_the_first_base_time():
    resolved = senml.resolve(senml.decode_json(COLLECTION))
    assert resolved[3] == {"n": "2001:db8::1/humidity", "u": "%RH", "v": 67, "t": 1.320078429e09}
    assert [r["n"] for r in resolved] == ["2001:db8::2/temperature", "2001:db8::2/humidity",
                                          "2001:db8::1/temperature", "2001:db8::1/humidity"]


def test_actuation_examples():
    assert [r["n"] for r in senml.resolve(senml.decode_json(THERMOSTAT))] == [
        _DEV + ":temp", _DEV + ":heat", _DEV + ":fan"]
    on = senml.resolve(senml.decode_json(LIGHTS_ON))
    assert on == [{"n": "2001:db8::3", "u": "/", "v": 1, "t": 1.320078429e09},
                  {"n": "2001:db8::4", "u": "/", "v": 1, "t": 1.320078429e09}]
    off = senml.resolve(senml.decode_json(LIGHTS_OFF))
    assert [r["v"] for r in off] == [0.5, 0.5, 0, 0]
    assert off[2]["t"] == 1.320078429e09 + 0.1


def test_json_text_is_compact_and_ordered():
    pack = [{"v": 1, "n": "a", "bn": "x/"}, {"n": "b", "vd": b"\xff\xfe\x00", "t": 1.5e9}]
    assert senml.encode_json(pack) == '[{"bn":"x/","n":"a","v":1},{"n":"b","t":1500000000.0,"vd":"__4A"}]'
    assert senml.encode_json([]) == "[]"


def test_bad_json_is_refused_with_the_reason():
    for text, words in (
        ("", "not JSON"), ("[{", "not JSON"), ('{"n":"a","v":1}', "array of records"),
        ("[1]", "must be an object"), ('[{"n":5,"v":1}]', "n must be a string"),
        ('[{"n":"a","v":"1"}]', "v must be a number"), ('[{"n":"a","vb":1}]', "vb must be a boolean"),
        ('[{"n":"a","vd":5}]', "vd must be a base64url string"),
        ('[{"n":"a","vd":"a+b/"}]', "not base64url"), ('[{"n":"a","vd":"abcde"}]', "not base64url"),
        ('[{"bver":11,"n":"a","v":1}]', "version 11"), ('[{"bver":0,"n":"a","v":1}]', "positive integer"),
    ):
        exc = raises(DecodeError, senml.decode_json, text)
        assert words in str(exc), (text, str(exc))
    raises(DecodeError, senml.decode_json, b"[\xff]")
    raises(ValueError, senml.encode_json, [{"n": "a", "v": float("nan")}])
    raises(ValueError, senml.encode_json, [{"n": "a", "v": float("inf")}])


def test_base64url_without_padding():
    for data in (b"", b"\x00", b"\x00\x01", b"\x00\x01\x02", b"\xfb\xff\xbf"):
        text = senml.b64url_encode(data)
        assert "=" not in text and "+" not in text and "/" not in text
        assert senml.b64url_decode(text) == data
    assert senml.b64url_decode("AA==") == b"\x00"  # padding is accepted on input
    raises(DecodeError, senml.b64url_decode, "A")
    raises(DecodeError, senml.b64url_decode, "AA=")
    raises(DecodeError, senml.b64url_decode, "AA===")
