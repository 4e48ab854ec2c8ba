"""SenML (RFC 8428) packs and records, and their CBOR form (RFC 8428 section 6).

A pack is a list of records; a record is a dict keyed by the SenML field
names ("bn", "bt", "bu", "bv", "bs", "bver", "n", "u", "v", "vs", "vb", "vd",
"s", "t", "ut"). Value types: names and units are str, "v"/"bv"/"s"/"bs"/
"t"/"bt"/"ut" are numbers (int or float, not bool), "vs" is str, "vb" bool,
"vd" bytes (the JSON form's base64 is not used here), "bver" a positive int.

    encode(pack) -> bytes       SenML-CBOR with the integer labels of RFC 8428 table 6
    decode(data) -> pack        validated; every problem is a DecodeError
    to_labels(pack) / from_labels(obj)   the same without the CBOR bytes
    resolve(pack, now=None)     RFC 8428 section 4.6: base fields folded in

Validation (from_labels, decode, resolve) refuses anything but a list of
maps, unknown labels (labels ending in "_" are must-understand per section
4.4 and are named as such; other unknown labels are refused too, so nothing
is silently dropped: an extension needs a new entry in the label table
here), values of the wrong type, and a "bver" newer than 10. Encoding
(to_labels, encode) applies the same rules and raises ValueError.

Map keys are written in one fixed order (base fields, then name, unit, time,
value) whatever the interpreter's dict order, so both interpreters produce
the same bytes; it is also the order of the RFC 8428 examples.
"""

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
_NAME_PUNCT = "-:./_"


def to_labels(pack):
    """Return the pack with CBOR integer labels: a list of dicts ready for any CBOR encoder.

    Raises ValueError for a pack that is not valid SenML (see the module docstring).
    """
    _check_pack(pack, ValueError)
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
            # bool is an int on CPython: True must not read as label 1
            name = None if label is True or label is False else NAMES.get(label)
            if name is None or not isinstance(label, int):
                raise DecodeError("SenML record %d: %s" % (i, _unknown(label)))
            rec[name] = value
        _check_record(rec, i, DecodeError)
        pack.append(rec)
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


def resolve(pack, now=None):
    """Return the resolved records of a pack (RFC 8428 section 4.6).

    Base fields carry over to the following records until changed. Each
    resolved record has "n" (base name + name, checked against the RFC name
    rules), "u" if a unit or base unit applies, its one value field ("v" with
    the base value added, or "vs"/"vb"/"vd"), "s" (base sum added) if any, "t"
    (base time + time) if either was given or now is given, and "ut" if
    present. A time below 2**28 is relative: with now (seconds since the
    epoch) it becomes now + time, without it stays relative.
    Raises DecodeError for an invalid pack, a bad name, or a record with no
    value or more than one.
    """
    _check_pack(pack, DecodeError)
    base_name = ""
    base_time = base_unit = base_value = base_sum = None
    out = []
    for i, rec in enumerate(pack):
        base_name = rec.get("bn", base_name)
        base_time = rec.get("bt", base_time)
        base_unit = rec.get("bu", base_unit)
        base_value = rec.get("bv", base_value)
        base_sum = rec.get("bs", base_sum)
        name = base_name + rec.get("n", "")
        if not valid_name(name):
            raise DecodeError("SenML record %d: invalid name %r" % (i, name))
        values = [key for key in _VALUES if key in rec]
        if len(values) > 1:
            raise DecodeError("SenML record %d has more than one value: %s"
                              % (i, ", ".join(values)))
        if not values and "s" not in rec:
            raise DecodeError("SenML record %d has no value (v, vs, vb, vd or s)" % i)
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
        if "s" in rec:
            resolved["s"] = rec["s"] if base_sum is None else base_sum + rec["s"]
        if "t" in rec or base_time is not None or now is not None:
            t = rec.get("t", 0)
            if base_time is not None:
                t = base_time + t
            if now is not None and t < RELATIVE_TIME_LIMIT:
                t = now + t
            resolved["t"] = t
        if "ut" in rec:
            resolved["ut"] = rec["ut"]
        out.append(resolved)
    return out


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


def _check_pack(pack, err):
    if not isinstance(pack, list):
        raise err("a SenML pack must be a list of records, not %s" % _type(pack))
    for i, rec in enumerate(pack):
        if not isinstance(rec, dict):
            raise err("SenML record %d must be a dict, not %s" % (i, _type(rec)))
        _check_record(rec, i, err)


def _check_record(rec, i, err):
    # every field known and of the right type; err is the exception class to raise
    for name, value in rec.items():
        kind = _KIND.get(name) if isinstance(name, str) else None
        if kind is None:
            raise err("SenML record %d: %s" % (i, _unknown(name)))
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


def _unknown(label):
    if isinstance(label, str) and label.endswith("_"):
        return "unknown must-understand label %r (RFC 8428 section 4.4)" % label
    return "unknown label %r" % (label,)


def _type(value):
    return type(value).__name__
