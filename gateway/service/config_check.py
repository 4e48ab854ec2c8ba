"""A TOML value checked against a msgspec schema: every problem names its key path, in the user's words.

msgspec's own errors say what a Python type wanted; these say what the file should hold
(``node[2].unit: expected an integer 1..247, got 300``) and suggest the closest key for a
misspelt one (``unknown key 'intervall'; did you mean 'interval'?``). Used by
:mod:`gateway.service.config` for the whole configuration, schema first, then its
cross-field rules.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable
from typing import Any

import msgspec.inspect as mi

from gateway.errors import GatewayError

NAME_PATTERN = r"^[A-Za-z0-9_-]+$"
"""The pattern of identifiers that go into topics and SenML names (described in words in errors)."""


class ProblemError(GatewayError):
    """A value that does not fit: ``path`` is the key path, ``message`` what is wrong (ConfigError says it)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check(value: Any, t: mi.Type, path: str) -> None:
    """Check ``value`` against the schema type ``t``; raise ProblemError naming ``path``."""
    if isinstance(t, mi.StructType):
        if not isinstance(value, dict):
            raise ProblemError(path, f"expected a table, got {_show(value)}")
        names = {f.encode_name: f for f in t.fields}
        for key in value:
            if key not in names:
                raise ProblemError(path, f"unknown key {key!r}{suggest(key, names)}")
        for name, field in names.items():
            if name in value:
                check(value[name], field.type, join(path, name))
            elif field.required:
                raise ProblemError(path, f"missing required key {name!r}")
    elif isinstance(t, mi.ListType):
        if not isinstance(value, list):
            raise ProblemError(path, f"expected a list, got {_show(value)}")
        for i, item in enumerate(value):
            check(item, t.item_type, f"{path}[{i}]")
    elif isinstance(t, mi.DictType):
        if not isinstance(value, dict):
            raise ProblemError(path, f"expected a table, got {_show(value)}")
        for key, item in value.items():
            check(key, t.key_type, join(path, key))
            check(item, t.value_type, join(path, key))
    elif not _fits(value, t):
        raise ProblemError(path, f"expected {_describe(t)}, got {_show(value)}")


def _fits(value: Any, t: mi.Type) -> bool:
    if isinstance(t, mi.LiteralType):
        return any(type(value) is type(v) and value == v for v in t.values)
    if isinstance(t, mi.IntType):
        return isinstance(value, int) and not isinstance(value, bool) and _in_range(value, t)
    if isinstance(t, mi.FloatType):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok and not math.isnan(value) and _in_range(value, t)
    if isinstance(t, mi.StrType):
        if not isinstance(value, str):
            return False
        if t.min_length is not None and len(value) < t.min_length:
            return False
        if t.max_length is not None and len(value) > t.max_length:
            return False
        return t.pattern is None or re.search(t.pattern, value) is not None
    return True


def _in_range(value: float, t: mi.IntType | mi.FloatType) -> bool:
    return not (
        (t.ge is not None and value < t.ge)
        or (t.gt is not None and value <= t.gt)
        or (t.le is not None and value > t.le)
        or (t.lt is not None and value >= t.lt)
    )


def _describe(t: mi.Type) -> str:
    if isinstance(t, mi.LiteralType):
        return "one of " + ", ".join(repr(v) for v in sorted(t.values, key=str))
    if isinstance(t, mi.IntType | mi.FloatType):
        kind = "an integer" if isinstance(t, mi.IntType) else "a number"
        lo = t.ge if t.ge is not None else t.gt
        hi = t.le if t.le is not None else t.lt
        if t.ge is not None and t.le is not None:
            return f"{kind} {t.ge}..{t.le}"
        if t.gt is not None and hi is not None:
            return f"{kind} > {t.gt} and <= {hi}"
        if lo is not None:
            return f"{kind} >= {lo}"
        return kind
    if isinstance(t, mi.StrType):
        if t.pattern == NAME_PATTERN:
            return f"a name of letters, digits, '_' and '-' (at most {t.max_length} characters)"
        if t.min_length:
            return "a non-empty string"
        if t.max_length is not None:
            return f"a string of at most {t.max_length} characters"
        return "a string"
    return str(t)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
