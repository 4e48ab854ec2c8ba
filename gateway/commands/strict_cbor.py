"""Strict decoding of untrusted CBOR: one complete item of plain data, or a clear error.

Everything the gateway receives from the network (command envelopes, the
commands inside them) is decoded here. cbor2 does the decoding; this module
adds what cbor2 leaves to the caller:

- exactly one item: trailing bytes are an error;
- plain data only: byte and text strings, integers, floats, booleans, null,
  arrays and maps. cbor2 turns semantic tags into Python objects (dates,
  decimals, sets, UUIDs, regular expressions, shared references that can even
  make cycles); none of them belongs in a command, so any such object is an
  error. The tags a caller expects (COSE's 17 and 18) are allowed at the top
  level only, as :class:`cbor2.CBORTag`;
- bounded nesting, which also catches cycles made with shared references.

Whatever the bytes, :func:`loads_strict` returns a value or raises
:class:`CborError`; nothing else (``python -m tools.fuzz.commands`` checks it
on its own and under the command and COSE decoders).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import cbor2

from gateway.errors import GatewayError

MAX_DEPTH = 8
"""Deepest nesting accepted (a command is three levels deep)."""

_SCALARS = (bytes, str, int, float, bool, type(None))


class CborError(GatewayError, ValueError):
    """Bytes that are not one complete CBOR item of plain data.

    Attributes:
        tag: the CBOR tag that was not expected there, when that is the problem (a
            caller tells "some other tagged message" from "broken bytes" by it); else None.
    """

    def __init__(self, problem: str, *, tag: int | None = None) -> None:
        super().__init__(problem)
        self.tag = tag


def loads_strict(data: bytes, *, top_tags: frozenset[int] = frozenset(), max_depth: int = MAX_DEPTH) -> Any:
    """Decode ``data`` as one CBOR item of plain data; a top-level tag in ``top_tags`` stays a CBORTag.

    Arrays inside the result may be tuples and maps may be immutable mappings
    (cbor2 decodes them so inside tags); callers test with ``Sequence`` and
    ``Mapping`` or convert.
    """
    stream = io.BytesIO(data)
    try:
        obj = cbor2.CBORDecoder(stream).decode()
    except Exception as exc:  # cbor2 raises many kinds (tag decoders run on input); all mean "not CBOR"
        raise CborError(f"not CBOR: {str(exc)[:80]}") from None
    if stream.tell() != len(data):
        raise CborError(f"{len(data) - stream.tell()} bytes after the CBOR item")
    if isinstance(obj, cbor2.CBORTag):
        if obj.tag not in top_tags:
            raise CborError(f"unexpected CBOR tag {obj.tag}", tag=obj.tag)
        _check_plain(obj.value, 1, max_depth)
        return obj
    _check_plain(obj, 0, max_depth)
    return obj


def _check_plain(obj: Any, depth: int, max_depth: int) -> None:
    if depth > max_depth:
        raise CborError(f"nested deeper than {max_depth} levels")
    if isinstance(obj, _SCALARS):
        return
    if isinstance(obj, list | tuple):
        for item in obj:
            _check_plain(item, depth + 1, max_depth)
        return
    if isinstance(obj, Mapping) and not isinstance(obj, cbor2.CBORTag):
        for key, value in obj.items():
            _check_plain(key, depth + 1, max_depth)
            _check_plain(value, depth + 1, max_depth)
        return
    if isinstance(obj, cbor2.CBORTag):
        raise CborError(f"unexpected CBOR tag {obj.tag}", tag=obj.tag)
    raise CborError(f"unexpected CBOR item: {type(obj).__name__} (a semantic tag)")
