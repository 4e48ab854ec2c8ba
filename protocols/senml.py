"""SenML (RFC 8428): packs and records in their JSON (section 5) and CBOR (section 6) forms, and resolution.

A pack is a list of records; a record is a dict keyed by the SenML field
names ("bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd",
"s", "t", "ut"). Value types: names and units are str, "v"/"bv"/"s"/"bs"/
"t"/"bt"/"ut" are numbers (int or float, not bool), "vs" is str, "vb" bool,
"vd" bytes (base64url in the JSON form, a byte string in CBOR), "bver" a
positive int.

    encode(pack) -> bytes           SenML-CBOR with the integer labels of RFC 8428 table 4
    decode(data) -> pack            validated; every problem is a DecodeError
    encode_json(pack) -> str        SenML-JSON (section 5)
    decode_json(text) -> pack       validated; every problem is a DecodeError
    to_labels(pack) / from_labels(obj)   the CBOR form without the bytes
    resolve(pack, now=None)         section 4.6: base fields folded in, records in time order

Reading (from_labels, decode, decode_json, resolve) follows section 4.4: a
field this module does not know is ignored, unless its label ends in "_"
(must-understand), which is an error; so is a "bver" newer than 10 or records
of one pack with different versions. In the CBOR form the integer labels of
table 4 are "conclusive" (section 6: extensions use text labels), so an
unknown integer label is malformed and refused, and a text label there is an
extension (ignored). Numbers may come as CBOR decimal fractions (tag 4,
section 6); they are read as floats. Writing (to_labels, encode, encode_json)
refuses unknown fields and values of the wrong type with ValueError: nothing
this side produces is silently dropped.

Map keys are written in one fixed order (base fields, then name, unit, time,
value) whatever the interpreter's dict order, so both interpreters produce
the same bytes; it is also the order of the RFC 8428 examples (the section 6
dump is reproduced byte for byte). It is not RFC 8949's core deterministic
order (which would put "n" before "bn"); see docs/upstream.md.
"""

import binascii
import json
import math

from protocols import cbor
from protocols.errors import DecodeError

VERSION = 10  # the SenML version this module understands (RFC 8428)
RELATIVE_TIME_LIMIT = 1 << 28  # times below this are relative to "now" (section 4.5.3)

# (field name, CBOR label, kind) in the order fields are written
_STR = 0
_NUM = 1
_BOOL = 2
_BYTES = 3
_VER = 4
_FIELDS = (
    ("bn", -2, _STR), ("bt", -3, _NUM), ("bu", -4, _STR), ("bv", -5, _NUM), ("bs", -6, _NUM),
    ("bver", -1, _VER), ("n", 0, _STR), ("u", 1, _STR), ("t", 6, _NUM), ("ut", 7, _NUM),
    ("v", 2, _NUM), ("vs", 3, _STR), ("vb", 4, _BOOL), ("vd", 8, _BYTES), ("s", 5, _NUM),
)
LABELS = {name: label for name, label, _ in _FIELDS}  # field name -> CBOR label
NAMES = {label: name for name, label, _ in _FIELDS}  # CBOR label -> field name
_KIND = {name: kind for name, _, kind in _FIELDS}
_KIND_NAMES = ("a string", "a number", "a boolean", "a byte string", "a positive integer")
_VALUES = ("v", "vs", "vb", "vd")
_REGULAR = ("n", "u", "v", "vs", "vb", "vd", "s", "t", "ut")
_NAME_PUNCT = "-:./_"


def to_labels(pack):
    """Return the pack with CBOR integer labels: a list of dicts ready for any CBOR encoder.

    Raises ValueError for a pack that is not valid SenML (see the module docstring).
    """
    _check_pack(pack, ValueError, True)
    out = []
    for rec in pack:
        labelled = {}
        for name, label, _ in _FIELDS:
            if name in rec:
                labelled[label] = rec[name]
        out.append(labelled)
    return out


def from_labels(obj):
    """Turn a decoded SenML-CBOR item (a list of maps with integer labels) into a pack.

    Raises DecodeError unless obj is a valid pack (see the module docstring).
    """
    if not isinstance(obj, list):
        raise DecodeError("a SenML pack must be an array of records, not %s" % _type(obj))
    pack = []
    for i, labelled in enumerate(obj):
        if not isinstance(labelled, dict):
            raise DecodeError("SenML record %d must be a map, not %s" % (i, _type(labelled)))
        rec = {}
        for label, value in labelled.items():
            if isinstance(label, str):
                if label.endswith("_"):
                    raise DecodeError("SenML record %d: %s" % (i, _unknown(label)))
                continue  # an extension this reader does not know: ignored (section 4.4)
            # bool is an int on CPython: True must not read as label 1
            name = None if label is True or label is False else NAMES.get(label)
            if name is None or not isinstance(label, int):
                raise DecodeError("SenML record %d: unknown label %r (not in RFC 8428 table 4)"
                                  % (i, label))
            rec[name] = _number(value) if _KIND[name] == _NUM else value
        pack.append(rec)
    _check_pack(pack, DecodeError, False)
    return pack


def encode(pack):
    """Encode a pack as SenML-CBOR bytes (fixed key order on every interpreter)."""
    records = to_labels(pack)
    out = cbor.dump_head(bytearray(), 4, len(records))
    for labelled in records:
        cbor.dump_head(out, 5, len(labelled))
        for _, label, _ in _FIELDS:
            if label in labelled:
                cbor.dump_into(label, out)
                cbor.dump_into(labelled[label], out)
    return bytes(out)


def decode(data):
    """Decode SenML-CBOR bytes into a validated pack; any problem is a DecodeError."""
    return from_labels(cbor.loads(data))


def encode_json(pack):
    """Encode a pack as SenML-JSON text (section 5): the same fields, "vd" in base64url without padding.

    Raises ValueError for a pack that is not valid SenML or holds a number JSON cannot carry (NaN, infinity).
    """
    _check_pack(pack, ValueError, True)
    parts = []
    for rec in pack:
        members = []
        for name, _, kind in _FIELDS:
            if name not in rec:
                continue
            value = rec[name]
            if kind == _BYTES:
                text = '"' + b64url_encode(value) + '"'
            elif kind == _NUM and isinstance(value, float):
                if not math.isfinite(value):
                    raise ValueError("%s = %r has no JSON form" % (name, value))
                text = repr(value)
            else:
                text = json.dumps(value)
            members.append('"' + name + '":' + text)
        parts.append("{" + ",".join(members) + "}")
    return "[" + ",".join(parts) + "]"


def decode_json(text):
    """Decode SenML-JSON text (str or UTF-8 bytes) into a validated pack; any problem is a DecodeError."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        try:
            text = str(text, "utf-8")
        except UnicodeError:
            raise DecodeError("SenML-JSON must be UTF-8") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise DecodeError("not JSON: %s" % (exc,)) from None
    if not isinstance(obj, list):
        raise DecodeError("a SenML pack must be an array of records, not %s" % _type(obj))
    pack = []
    for i, member in enumerate(obj):
        if not isinstance(member, dict):
            raise DecodeError("SenML record %d must be an object, not %s" % (i, _type(member)))
        rec = {}
        for name, value in member.items():
            kind = _KIND.get(name)
            if kind is None:
                if name.endswith("_"):
                    raise DecodeError("SenML record %d: %s" % (i, _unknown(name)))
                continue  # an extension this reader does not know: ignored (section 4.4)
            if kind == _BYTES:
                if not isinstance(value, str):
                    raise DecodeError("SenML record %d: vd must be a base64url string, not %s"
                                      % (i, _type(value)))
                rec[name] = b64url_decode(value, i)
                continue
            if kind == _NUM and isinstance(value, float) and not math.isfinite(value):
                raise DecodeError("SenML record %d: %s is not a finite number" % (i, name))
            rec[name] = value
        pack.append(rec)
    _check_pack(pack, DecodeError, False)
    return pack


def resolve(pack, now=None):
    """Return the resolved records of a pack (RFC 8428 section 4.6), in chronological order.

    Base fields carry over to the following records until changed. Each
    resolved record has "n" (base name + name, checked against the rules of
    section 4.5.1), "u" if a unit or base unit applies, its value (section
    4.5.4: "v" is base value + value, and a record with no value field of its
    own takes the base value; "vs", "vb", "vd" as given), "s" (base sum + sum)
    if either applies, "t" (base time + time) if either was given or now is
    given, "ut" if present, and "bver" if the pack's version is not 10. A time
    below 2**28 is relative: with now (seconds since the epoch) it becomes
    now + time; without it stays relative. A record with only base fields
    yields no resolved record. Records are put in time order (stable: records
    of one instant keep their order; a record without time sorts as time 0).
    Raises DecodeError for an invalid pack, a bad name, or a record with no
    value or more than one.
    """
    version = _check_pack(pack, DecodeError, False)
    base_name = ""
    base_time = base_unit = base_value = base_sum = None
    out = []  # type: list[tuple[float, int, dict[str, object]]]
    for i, rec in enumerate(pack):
        base_name = rec.get("bn", base_name)
        base_time = rec.get("bt", base_time)
        base_unit = rec.get("bu", base_unit)
        base_value = rec.get("bv", base_value)
        base_sum = rec.get("bs", base_sum)
        if not any(key in rec for key in _REGULAR):
            continue  # only base fields: they apply to the records that follow
        name = base_name + rec.get("n", "")
        if not valid_name(name):
            raise DecodeError("SenML record %d: invalid name %r" % (i, name))
        values = [key for key in _VALUES if key in rec]
        if len(values) > 1:
            raise DecodeError("SenML record %d has more than one value: %s"
                              % (i, ", ".join(values)))
        resolved = {"n": name}
        unit = rec.get("u", base_unit)
        if unit is not None:
            resolved["u"] = unit
        if values:
            key = values[0]
            value = rec[key]
            if key == "v" and base_value is not None:
                value = base_value + value
            resolved[key] = value
        elif base_value is not None:
            resolved["v"] = base_value
        if "s" in rec or base_sum is not None:
            resolved["s"] = rec.get("s", 0) + (0 if base_sum is None else base_sum)
        if "v" not in resolved and "s" not in resolved and not values:
            raise DecodeError("SenML record %d has no value (v, vs, vb, vd or s)" % i)
        if "t" in rec or base_time is not None or now is not None:
            t = rec.get("t", 0)
            if base_time is not None:
                t = base_time + t
            if now is not None and t < RELATIVE_TIME_LIMIT:
                t = now + t
            resolved["t"] = t
        if "ut" in rec:
            resolved["ut"] = rec["ut"]
        if version != VERSION:
            resolved["bver"] = version
        out.append((resolved.get("t", 0), len(out), resolved))
    out.sort()  # (time, position): stable on every interpreter
    return [entry[2] for entry in out]


def b64url_encode(data):
    """Base64 with the URL-safe alphabet and no padding (RFC 4648 section 5), as SenML-JSON's "vd"."""
    text = str(binascii.b2a_base64(bytes(data)), "ascii").strip()
    return text.replace("+", "-").replace("/", "_").rstrip("=")


def b64url_decode(text, index=0):
    """The bytes of a base64url "vd" text (padding optional); DecodeError naming record index otherwise."""
    body = text.rstrip("=")
    if len(body) % 4 == 1 or (text != body and (len(text) % 4 or len(text) - len(body) > 2)):
        raise DecodeError("SenML record %d: vd is not base64url (length %d)" % (index, len(text)))
    for c in body:
        if not ("A" <= c <= "Z" or "a" <= c <= "z" or "0" <= c <= "9" or c in "-_"):
            raise DecodeError("SenML record %d: vd is not base64url (character %r)" % (index, c))
    padded = body.replace("-", "+").replace("_", "/") + "=" * (-len(body) % 4)
    try:
        return binascii.a2b_base64(padded)
    except ValueError:
        raise DecodeError("SenML record %d: vd is not base64url" % index) from None


def valid_name(name):
    """True if name is a valid resolved SenML name (RFC 8428 4.5.1): [A-Za-z0-9][-:./_A-Za-z0-9]*"""
    if not name:
        return False
    for i in range(len(name)):
        c = name[i]
        if "a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9":
            continue
        if i == 0 or c not in _NAME_PUNCT:
            return False
    return True


def _check_pack(pack, err, writing):
    # every record of a list of dicts checked; returns the pack's version (one for all records)
    if not isinstance(pack, list):
        raise err("a SenML pack must be a list of records, not %s" % _type(pack))
    version = None
    for i, rec in enumerate(pack):
        if not isinstance(rec, dict):
            raise err("SenML record %d must be a dict, not %s" % (i, _type(rec)))
        _check_record(rec, i, err, writing)
        if "bver" in rec:
            if version is not None and rec["bver"] != version:
                raise err("SenML record %d: version %d differs from the pack's version %d (section 4.4)"
                          % (i, rec["bver"], version))
            version = rec["bver"]
        elif version is None:
            version = VERSION
    return VERSION if version is None else version


def _check_record(rec, i, err, writing):
    # every field of the right type; unknown fields refused when writing (reading drops them first)
    for name, value in rec.items():
        kind = _KIND.get(name) if isinstance(name, str) else None
        if kind is None:
            if writing:
                raise err("SenML record %d: %s" % (i, _unknown(name)))
            continue
        if kind == _STR:
            ok = isinstance(value, str)
        elif kind == _NUM:
            ok = _is_number(value)
        elif kind == _BOOL:
            ok = value is True or value is False
        elif kind == _BYTES:
            ok = isinstance(value, (bytes, bytearray))
        else:
            ok = isinstance(value, int) and value is not True and value is not False and value > 0
            if ok and value > VERSION:
                raise err("SenML record %d: version %d is newer than %d, which this decoder reads"
                          % (i, value, VERSION))
        if not ok:
            raise err("SenML record %d: %s must be %s, not %s"
                      % (i, name, _KIND_NAMES[kind], _type(value)))


def _is_number(value):
    return isinstance(value, (int, float)) and value is not True and value is not False


def _number(value):
    # a CBOR decimal fraction (tag 4, [exponent, mantissa]) as a float; anything else unchanged
    if isinstance(value, cbor.Tag) and value.tag == 4:
        pair = value.value
        if (isinstance(pair, list) and len(pair) == 2 and _is_int(pair[0]) and _is_int(pair[1])):
            exponent, mantissa = pair
            return mantissa * 10 ** exponent if exponent >= 0 else mantissa / 10 ** -exponent
    elif type(value).__name__ == "Decimal":  # cbor2 reads tag 4 as a decimal.Decimal
        return float(value)
    return value


def _is_int(value):
    return isinstance(value, int) and value is not True and value is not False


def _unknown(label):
    if isinstance(label, str) and label.endswith("_"):
        return "unknown must-understand label %r (RFC 8428 section 4.4)" % label
    return "unknown label %r" % (label,)


def _type(value):
    return type(value).__name__
