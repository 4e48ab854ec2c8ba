"""Compact CBOR (RFC 8949) codec for MicroPython and CPython.

`dumps(obj)` encodes with preferred serialization (shortest heads, shortest
float that round-trips exactly, definite lengths); `dumps(obj, True)` adds
map keys sorted by the bytes of their encoding: RFC 8949 section 4.2.1 core
deterministic encoding, the same bytes on every interpreter whatever its dict
order (use it wherever bytes are hashed, signed or compared); `loads(data)` decodes one
complete item and `loads_prefix(data, offset)` decodes one item and returns
where it ended, for streams.

Python <-> CBOR:
    int             major 0/1; outside [-2**64, 2**64 - 1] tag 2/3 bignum
                    (tags 2/3 decode back to int)
    bytes, bytearray, memoryview -> byte string (decodes to bytes)
    str             text string (must be valid UTF-8 on decode)
    list, tuple     array (decodes to list)
    dict            map, in iteration order (decodes to dict); MicroPython
                    dicts do not keep insertion order: for a fixed key
                    order write the map with dump_head() and dump_into()
    float           half, single or double: the shortest exact one;
                    NaN -> f97e00, +/-inf -> half
    True/False/None, UNDEFINED (simple 23), Simple(n) for other simple values
    Tag(tag, value) any other tag, kept as is on decode

The decoder accepts indefinite-length strings, arrays and maps, and rejects
everything that is not well-formed with `protocols.errors.DecodeError` naming
the offset: truncation, reserved additional information (28..30), two-byte
simple values below 32 (f818..f81f), a misplaced break, invalid UTF-8
(checked by hand where the interpreter's decoder is lax, as MicroPython's is
about overlong forms and surrogates), duplicate map keys, and nesting deeper
than `MAX_DEPTH`. It never recurses (an explicit stack), and it checks every
declared length against the bytes left before allocating anything.

Limits, by design:
- map keys must be hashable in Python: an array or map used as a key is a
  DecodeError; keys Python holds equal (1, 1.0, True) count as duplicates;
- the semantics of tags other than 2/3 are not checked (0 stays a Tag);
- floats: the MicroPython unix port has double floats like CPython; on the
  ESP32 port floats are single precision, so a decoded double is rounded to
  single and an encoded float is never wider than single there;
- half floats are converted by hand (MicroPython's struct 'e' saturates
  instead of failing, and may be missing on some ports).
"""

import math
import struct

from protocols.errors import DecodeError

try:
    from micropython import const
except ImportError:

    def const(x):
        return x


MAX_DEPTH = 32  # nesting of arrays, maps and tags, for both directions

_ARRAY = const(0)
_MAP = const(1)
_TAG = const(2)
_INDEFINITE = const(-1)
_UINT64_END = 1 << 64
_FLOAT32_MAX = 3.4028234663852886e38
_INF = float("inf")
_NAN = float("nan")
_ARG_NAMES = ("uint8", "uint16", "uint32", "uint64")
_MAJOR_NAMES = ("uint", "negint", "byte string", "text string", "array", "map", "tag", "simple")


class _NoKey:
    """Marks a map frame that waits for a key rather than a value."""


_NOKEY = _NoKey()


class Tag:
    """A tagged item: `tag` (int, 0..2**64-1) applied to `value`."""

    def __init__(self, tag, value):
        if not isinstance(tag, int) or isinstance(tag, bool) or not 0 <= tag < _UINT64_END:
            raise ValueError("CBOR tag must be an int in 0..2**64-1, not %r" % (tag,))
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self.tag, self.value))

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


class Simple:
    """A simple value other than false/true/null/undefined: 0..19 or 32..255."""

    def __init__(self, value):
        if not isinstance(value, int) or not (0 <= value < 20 or 32 <= value < 256):
            raise ValueError("CBOR simple value must be 0..19 or 32..255, not %r" % (value,))
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Simple) and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(("simple", self.value))

    def __repr__(self):
        return "Simple(%d)" % self.value


class _Undefined:
    """The type of UNDEFINED (CBOR simple value 23); use the singleton."""

    def __repr__(self):
        return "UNDEFINED"

    def __bool__(self):
        return False


UNDEFINED = _Undefined()


# ---------------------------------------------------------------- encoding


def dumps(obj, deterministic=False):
    """Encode obj as CBOR (preferred serialization) and return bytes.

    With deterministic true, map keys are sorted bytewise by their encoding
    (RFC 8949 section 4.2.1, core deterministic encoding; note that cbor2's
    canonical mode sorts shorter keys first, RFC 7049's older rule, which
    differs for keys such as -1 and 1000).
    Raises TypeError for a Python type CBOR cannot carry and ValueError for
    nesting deeper than MAX_DEPTH (which includes self-referencing lists).
    """
    out = bytearray()
    _encode(obj, out, 0, deterministic)
    return bytes(out)


def dump_into(obj, out):
    """Append the CBOR encoding of obj to the bytearray out; return out."""
    _encode(obj, out, 0)
    return out


def dump_head(out, major, n):
    """Append the head of a major type 0..7 item with argument n (0..2**64-1) to out.

    With dump_into this writes maps in a chosen key order, which matters on
    MicroPython, whose dicts do not keep insertion order.
    """
    if not 0 <= major <= 7 or not 0 <= n < _UINT64_END:
        raise ValueError("CBOR head needs major 0..7 and argument 0..2**64-1")
    _head(out, major << 5, n)
    return out


def _head(out, major, n):
    # major is already shifted (0x00, 0x20, ... 0xe0); n < 2**64
    if n < 24:
        out.append(major | n)
    elif n < 0x100:
        out.append(major | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(major | 25)
        out.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        out.append(major | 26)
        out.extend(struct.pack(">I", n))
    else:
        out.append(major | 27)
        out.extend(struct.pack(">Q", n))


def _encode(obj, out, depth, deterministic=False):
    # bool first: on CPython bool is an int (on MicroPython it is not)
    if obj is None:
        out.append(0xF6)
    elif obj is True:
        out.append(0xF5)
    elif obj is False:
        out.append(0xF4)
    elif isinstance(obj, int):
        if obj >= 0:
            if obj < _UINT64_END:
                _head(out, 0x00, obj)
            else:
                _bignum(out, 0xC2, obj)
        else:
            n = -1 - obj
            if n < _UINT64_END:
                _head(out, 0x20, n)
            else:
                _bignum(out, 0xC3, n)
    elif isinstance(obj, str):
        b = obj.encode("utf-8")
        _head(out, 0x60, len(b))
        out.extend(b)
    elif isinstance(obj, (bytes, bytearray)):
        _head(out, 0x40, len(obj))
        out.extend(obj)
    elif isinstance(obj, memoryview):
        b = bytes(obj)  # flattens any item format to raw bytes
        _head(out, 0x40, len(b))
        out.extend(b)
    elif isinstance(obj, float):
        _float(out, obj)
    elif isinstance(obj, (list, tuple)):
        if depth >= MAX_DEPTH:
            raise ValueError("CBOR nesting deeper than %d (a self-referencing list?)" % MAX_DEPTH)
        _head(out, 0x80, len(obj))
        for item in obj:
            _encode(item, out, depth + 1, deterministic)
    elif isinstance(obj, dict):
        if depth >= MAX_DEPTH:
            raise ValueError("CBOR nesting deeper than %d (a self-referencing dict?)" % MAX_DEPTH)
        _head(out, 0xA0, len(obj))
        if deterministic:
            pairs = []
            for key, value in obj.items():
                encoded = bytearray()
                _encode(key, encoded, depth + 1, True)
                pairs.append((bytes(encoded), value))
            pairs.sort(key=_first)
            for key_bytes, value in pairs:
                out.extend(key_bytes)
                _encode(value, out, depth + 1, True)
        else:
            for key, value in obj.items():
                _encode(key, out, depth + 1)
                _encode(value, out, depth + 1)
    elif isinstance(obj, Tag):
        if depth >= MAX_DEPTH:
            raise ValueError("CBOR nesting deeper than %d" % MAX_DEPTH)
        _head(out, 0xC0, obj.tag)
        _encode(obj.value, out, depth + 1, deterministic)
    elif isinstance(obj, Simple):
        _head(out, 0xE0, obj.value)
    elif obj is UNDEFINED:
        out.append(0xF7)
    else:
        raise TypeError("cannot encode an object of type %s as CBOR" % type(obj).__name__)


def _first(pair):
    return pair[0]


def _bignum(out, tag_byte, n):
    # n >= 2**64: minimal big-endian bytes under tag 2 (positive) or 3 (negative)
    size = 0
    t = n
    while t:
        t >>= 8
        size += 1
    out.append(tag_byte)
    _head(out, 0x40, size)
    out.extend(n.to_bytes(size, "big"))


def _float(out, f):
    if math.isnan(f):
        out.extend(b"\xf9\x7e\x00")
        return
    h = _half_bits(f)
    if h >= 0:
        out.append(0xF9)
        out.extend(struct.pack(">H", h))
        return
    if -_FLOAT32_MAX <= f <= _FLOAT32_MAX:
        b = struct.pack(">f", f)
        if struct.unpack(">f", b)[0] == f:
            out.append(0xFA)
            out.extend(b)
            return
    out.append(0xFB)
    out.extend(struct.pack(">d", f))


def _half_bits(f):
    """Return the IEEE 754 half-precision bits of f if it is exactly a half, else -1."""
    if f == 0.0:
        return 0x8000 if math.copysign(1.0, f) < 0 else 0
    sign = 0
    if f < 0:
        sign = 0x8000
        f = -f
    if f == _INF:
        return sign | 0x7C00
    m, e = math.frexp(f)  # f = m * 2**e with 0.5 <= m < 1
    if e > 16:
        return -1
    if e >= -13:  # normal half: unbiased exponent e - 1 in -14..15, 11 significant bits
        q = math.ldexp(m, 11)
        if q != int(q):
            return -1
        return sign | ((e + 14) << 10) | (int(q) - 1024)
    q = math.ldexp(f, 24)  # subnormal half: a multiple of 2**-24, below 2**-14
    if q != int(q):
        return -1
    return sign | int(q)


def _half_to_float(h):
    """Convert IEEE 754 half-precision bits to a float."""
    mant = h & 0x3FF
    exp = (h >> 10) & 0x1F
    if exp == 0:
        val = math.ldexp(mant, -24)
    elif exp == 31:
        val = _INF if mant == 0 else _NAN
    else:
        val = math.ldexp(mant + 1024, exp - 25)
    return -val if h & 0x8000 else val


# ---------------------------------------------------------------- decoding


def loads(data, max_depth=MAX_DEPTH):
    """Decode exactly one CBOR item from data (bytes, bytearray or memoryview).

    Bytes left over after the item are a DecodeError, as is anything not
    well-formed (see the module docstring).
    """
    obj, end = loads_prefix(data, 0, max_depth)
    if end != len(data):
        raise DecodeError(
            "trailing bytes at offset %d: %d bytes after the item" % (end, len(data) - end)
        )
    return obj


def loads_prefix(data, offset=0, max_depth=MAX_DEPTH):
    """Decode one CBOR item starting at offset; return (obj, end_offset).

    For streams: bytes after end_offset are left alone. An incomplete item is
    a DecodeError whose message starts with "truncated".
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("CBOR input must be bytes, bytearray or memoryview, not %s"
                        % type(data).__name__)
    buf = memoryview(data)
    if getattr(buf, "format", "B") != "B":
        buf = buf.cast("B")
    end = len(buf)
    if not 0 <= offset <= end:
        raise ValueError("offset %d outside the data (length %d)" % (offset, end))
    pos = offset
    # open containers: [_ARRAY, list, left, start], [_MAP, dict, left, start, key], [_TAG, n, start]
    stack = []  # type: ignore[var-annotated]  # heterogeneous frames, see above
    while True:
        if pos >= end:
            raise _truncated(pos, 1, "the initial byte of an item")
        start = pos
        ib = buf[pos]
        pos += 1
        major = ib >> 5
        ai = ib & 31
        if ai < 24:
            arg = ai
        elif ai < 28:
            arg, pos = _argument(buf, pos, end, ai)
        elif ai == 31:
            if major < 2 or major == 6:
                raise DecodeError("indefinite length is not allowed for a %s at offset %d"
                                  % (_MAJOR_NAMES[major], start))
            arg = _INDEFINITE
        else:
            raise DecodeError("reserved additional information %d at offset %d" % (ai, start))

        if major == 0:
            value = arg
        elif major == 1:
            value = -1 - arg
        elif major in (2, 3):
            if arg == _INDEFINITE:
                value, pos = _chunks(buf, pos, end, major, start)
            else:
                if arg > end - pos:
                    raise _truncated(pos, arg - (end - pos), "a %s of length %d"
                                     % (_MAJOR_NAMES[major], arg))
                value = bytes(buf[pos:pos + arg])
                if major == 3:
                    value = _text(value, start)
                pos += arg
        elif major in (4, 5):
            if arg == 0:
                value = [] if major == 4 else {}
            else:
                if len(stack) >= max_depth:
                    raise DecodeError("nesting deeper than %d at offset %d" % (max_depth, start))
                if arg != _INDEFINITE:
                    need = arg if major == 4 else 2 * arg  # each item takes a byte at least
                    if need > end - pos:
                        raise _truncated(pos, need - (end - pos), "a %s of %d entries"
                                         % (_MAJOR_NAMES[major], arg))
                if major == 4:
                    stack.append([_ARRAY, [], arg, start])
                else:
                    stack.append([_MAP, {}, arg, start, _NOKEY])
                continue
        elif major == 6:
            if len(stack) >= max_depth:
                raise DecodeError("nesting deeper than %d at offset %d" % (max_depth, start))
            stack.append([_TAG, arg, start])
            continue
        elif ai < 24:
            value = _SIMPLE_SMALL[ai] if ai >= 20 else Simple(ai)
        elif ai == 24:
            if arg < 32:
                raise DecodeError("simple value %d at offset %d is not well-formed in two bytes"
                                  % (arg, start))
            value = Simple(arg)
        elif ai == 25:
            value = _half_to_float(arg)
        elif ai == 26:
            value = struct.unpack_from(">f", buf, start + 1)[0]
        elif ai == 27:
            value = struct.unpack_from(">d", buf, start + 1)[0]
        else:  # break
            frame = stack[-1] if stack else None
            if frame is None or frame[0] == _TAG or frame[2] != _INDEFINITE:
                raise DecodeError("unexpected break (0xff) at offset %d" % start)
            if frame[0] == _MAP and frame[4] is not _NOKEY:
                raise DecodeError("break at offset %d after a map key without its value" % start)
            stack.pop()
            value = frame[1]

        # hand the finished value to its container(s)
        while stack:
            frame = stack[-1]
            kind = frame[0]
            if kind == _ARRAY:
                frame[1].append(value)
            elif kind == _MAP:
                if frame[4] is _NOKEY:
                    try:
                        hash(value)  # MicroPython skips hashing when probing an empty dict
                    except TypeError:
                        raise DecodeError("unhashable map key (%s) in the map at offset %d"
                                          % (type(value).__name__, frame[3])) from None
                    if value in frame[1]:
                        raise DecodeError("duplicate map key %r in the map at offset %d"
                                          % (value, frame[3]))
                    frame[4] = value
                    break
                frame[1][frame[4]] = value
                frame[4] = _NOKEY
            else:
                stack.pop()
                value = _tagged(frame[1], value, frame[2])
                continue
            left = frame[2]
            if left == _INDEFINITE:
                break
            left -= 1
            if left:
                frame[2] = left
                break
            stack.pop()
            value = frame[1]
        else:
            return value, pos


_SIMPLE_SMALL = {20: False, 21: True, 22: None, 23: UNDEFINED}


def _truncated(pos, missing, what):
    return DecodeError("truncated at offset %d: need %d more bytes for %s" % (pos, missing, what))


def _argument(buf, pos, end, ai):
    # the 1/2/4/8-byte argument after an initial byte with additional info 24..27
    size = 1 << (ai - 24)
    if size > end - pos:
        raise _truncated(pos, size - (end - pos), _ARG_NAMES[ai - 24])
    if size == 1:
        return buf[pos], pos + 1
    return int.from_bytes(bytes(buf[pos:pos + size]), "big"), pos + size


def _chunks(buf, pos, end, major, start):
    # an indefinite-length string: definite chunks of the same major type, then a break
    parts = bytearray()
    while True:
        if pos >= end:
            raise _truncated(pos, 1, "the next chunk or break of the string at offset %d" % start)
        at = pos
        ib = buf[pos]
        pos += 1
        if ib == 0xFF:
            break
        ai = ib & 31
        if ib >> 5 != major or ai > 27:
            raise DecodeError("bad chunk (initial byte 0x%02x) at offset %d in the indefinite %s "
                              "at offset %d" % (ib, at, _MAJOR_NAMES[major], start))
        n = ai
        if ai >= 24:
            n, pos = _argument(buf, pos, end, ai)
        if n > end - pos:
            raise _truncated(pos, n - (end - pos), "a chunk of length %d" % n)
        chunk = bytes(buf[pos:pos + n])
        if major == 3:
            _text(chunk, at)  # each chunk must be valid UTF-8 on its own
        parts.extend(chunk)
        pos += n
    value = bytes(parts)
    return (value.decode("utf-8") if major == 3 else value), pos


def _text(raw, start):
    try:
        s = raw.decode("utf-8")
    except UnicodeError:
        raise DecodeError("invalid UTF-8 in the text string at offset %d" % start) from None
    if _LAX_UTF8 and len(s) != len(raw):
        bad = utf8_error(raw)
        if bad >= 0:
            raise DecodeError("invalid UTF-8 (byte %d) in the text string at offset %d"
                              % (bad, start))
    return s


def utf8_error(raw):
    """Return the index of the first byte that breaks strict UTF-8 (RFC 3629) in raw, or -1."""
    i = 0
    n = len(raw)
    while i < n:
        b = raw[i]
        if b < 0x80:
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            more, lo, hi = 1, 0x80, 0xBF
        elif 0xE0 <= b <= 0xEF:
            more = 2
            lo = 0xA0 if b == 0xE0 else 0x80
            hi = 0x9F if b == 0xED else 0xBF  # no surrogates
        elif 0xF0 <= b <= 0xF4:
            more = 3
            lo = 0x90 if b == 0xF0 else 0x80
            hi = 0x8F if b == 0xF4 else 0xBF  # nothing above U+10FFFF
        else:
            return i
        if i + more >= n:
            return i
        if not lo <= raw[i + 1] <= hi:
            return i
        for j in range(i + 2, i + 1 + more):
            if not 0x80 <= raw[j] <= 0xBF:
                return i
        i += 1 + more
    return -1


def _lax_utf8():
    # MicroPython decodes overlong forms and surrogates without complaint
    try:
        b"\xed\xa0\x80".decode("utf-8")
    except UnicodeError:
        return False
    return True


_LAX_UTF8 = _lax_utf8()


def _tagged(tag, value, start):
    if tag in (2, 3):
        if not isinstance(value, bytes):
            raise DecodeError("tag %d at offset %d must enclose a byte string" % (tag, start))
        n = int.from_bytes(value, "big")
        return n if tag == 2 else -1 - n
    return Tag(tag, value)
