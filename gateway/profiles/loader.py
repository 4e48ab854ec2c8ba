"""Read, check and compile one device profile (TOML) into a register map.

The schema below is the single statement of what a profile may say; msgspec
checks the structure and :func:`_compile` the rules that span fields (a coil is
a bit, a writable value has a range, bounds fit the type and the scale). The
register map built from it checks the rest (names, overlapping addresses), and
its complaints are re-worded with the file's register names.
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from gateway.errors import GatewayError

if TYPE_CHECKING:  # the contracts module loads profiles by name: it is imported back only when a file is read
    from gateway.contracts import RegisterMap

SHIPPED = Path(__file__).resolve().parent / "devices"
"""The folder of the profiles shipped with the gateway (one ``<name>.toml`` each)."""

SENML_UNITS = frozenset((
    # RFC 8428 section 12.1 (primary units, the "not recommended" ones included) ...
    "m", "kg", "g", "s", "A", "K", "cd", "mol", "Hz", "rad", "sr", "N", "Pa", "J", "W", "C", "V", "F", "Ohm",
    "S", "Wb", "T", "H", "Cel", "lm", "lx", "Bq", "Gy", "Sv", "kat", "m2", "m3", "l", "m/s", "m/s2", "m3/s",
    "l/s", "W/m2", "cd/m2", "bit", "bit/s", "lat", "lon", "pH", "dB", "dBW", "Bspl", "count", "/", "%", "%RH",
    "%EL", "EL", "1/s", "1/min", "beat/min", "beats", "S/m", "B", "VA", "VAs", "var", "vars", "J/m", "kg/m3",
    "deg",
    # ... and RFC 8798 (secondary units)
    "ms", "min", "h", "MHz", "kW", "kVA", "kvar", "Ah", "Wh", "kWh", "varh", "kvarh", "kVAh", "Wh/km", "KiB",
    "GB", "Mbit/s", "B/s", "MB/s", "mV", "mA", "dBm", "ug/m3", "mm/h", "m/h", "ppm", "/100", "/1000", "hPa",
    "mm", "cm", "km", "km/h",
))
"""SenML units (RFC 8428 and RFC 8798): the only units a profile may give."""

_VALUE_NAME = r"^[a-z][a-z0-9_]*$"
_FIRMWARE_ROLES = ("lamp", "meter", "env")
# Names the gateway reads a meaning into on any node: a poll's sequence number, the node's role, its event log.
_RESERVED = {
    "seq": "the gateway takes a 'seq' value as the poll's sequence number (duplicates upstream are dropped by it)",
    "role": "the gateway checks a 'role' value against the role of a streetedge node",
    "event_from": "the gateway takes an 'event_from' register for a streetedge node's event log",
}
_TABLES = {"holding": 3, "input": 4, "coil": 1, "discrete_input": 2}
_TYPES = {"u16": 0, "s16": 1, "u32": 2, "s32": 3, "bool": 4, "float32": 5}
_INT_LIMITS = {"u16": (0, 0xFFFF), "s16": (-0x8000, 0x7FFF), "u32": (0, 0xFFFFFFFF),
               "s32": (-0x80000000, 0x7FFFFFFF), "bool": (0, 1)}
_F32_LIMIT = 3.4e38
_NEEDS_RANGE = "a writable value needs min and max (the range a command may write)"
_MAX_REQUESTS = 4  # a table is read as one span: more requests than this means addresses far apart


class ProfileError(GatewayError, ValueError):
    """A profile that cannot be used; the message names the file, the register and the field."""


class DeviceSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[device]``: what the device is and where its register map is documented."""

    name: Annotated[str, msgspec.Meta(pattern=_VALUE_NAME, max_length=32)]
    """The profile's name: what ``[[node]] role`` says, and the role in births."""
    manufacturer: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """Who makes the device."""
    model: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    """The model (and variant) the map was taken from."""
    datasheet: Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
    """The document (title, version, address) the registers come from."""
    description: str = ""
    """A sentence for people: what the device is for."""
    max_read: Annotated[int, msgspec.Meta(ge=1, le=2000)] = 125
    """Most registers (or bits) the device answers in one read request."""


class RegisterSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[register]]``: one value of the device."""

    name: Annotated[str, msgspec.Meta(pattern=_VALUE_NAME, max_length=48)]
    """The value's name (the SenML ``n``): lower-case letters, digits and '_'."""
    function: Literal["holding", "input", "coil", "discrete_input"]
    """Where it lives: holding (03, written 16), input (04), coil (01, written 05/15), discrete_input (02)."""
    address: Annotated[int, msgspec.Meta(ge=0, le=0xFFFF)]
    """0-based protocol address (a manual's 30001 or 40001 is address 0)."""
    type: Literal["u16", "s16", "u32", "s32", "float32", "bool"] | None = None
    """Value type; coils and discrete inputs are ``bool`` (the default for them)."""
    word_order: Literal["high_first", "low_first"] = "high_first"
    """Which word of a 32-bit value comes first (at the lower address)."""
    scale: Annotated[int, msgspec.Meta(ge=-9, le=9)] = 0
    """Power of ten: value = raw x 10^scale (0 for float32, which carries its own exponent)."""
    unit: str | None = None
    """SenML unit (RFC 8428, RFC 8798), or none."""
    writable: bool = False
    """Whether a command may write it (holding registers and coils only)."""
    min: int | float | None = None
    """Lowest value a command may write (engineering units); required for writable numbers."""
    max: int | float | None = None
    """Highest value a command may write (engineering units); required for writable numbers."""
    doc: Annotated[str, msgspec.Meta(max_length=200)] = ""
    """What the value means."""
    poll: Literal["measure", "counter", "setting", "identity"] = "measure"
    """How often the gateway reads it (docs/architecture.md, "What a poll reads"): ``measure`` at
    every poll, ``counter`` every 10th, ``setting`` and ``identity`` at the first poll, after a
    command through the gateway and after a ``refresh`` command."""


class ProfileFile(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A whole profile file."""

    device: DeviceSection
    register: Annotated[list[RegisterSection], msgspec.Meta(min_length=1)]


class Profile:
    """A checked profile.

    Attributes:
        name: the profile's name (the node role it defines).
        device: the ``[device]`` section.
        source: the file it was read from.
        regmap: the register map the gateway polls and commands the device by.
    """

    __slots__ = ("device", "name", "regmap", "source")

    def __init__(self, device: DeviceSection, source: str, regmap: RegisterMap) -> None:
        self.name = device.name
        self.device = device
        self.source = source
        self.regmap = regmap

    def __repr__(self) -> str:
        return f"<Profile {self.name} from {self.source}>"


def shipped_profiles() -> list[str]:
    """Names of the profiles shipped with the gateway, sorted."""
    return sorted(p.stem for p in SHIPPED.glob("*.toml"))


def shipped_profile(name: str) -> Profile:
    """The shipped profile called ``name``; ProfileError naming the shipped ones if there is none."""
    path = SHIPPED / f"{name}.toml"
    if not re.fullmatch(_VALUE_NAME, name) or not path.is_file():
        known = shipped_profiles()
        raise ProfileError(f"no shipped profile {name!r}{_suggest(name, known)} (shipped: {', '.join(known)})")
    return load_profile(path)


def load_profile(path: Path) -> Profile:
    """Read and check the profile at ``path``."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such profile file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the profile: {exc}") from exc
    return parse_profile(text, source=str(path))


def parse_profile(text: str, *, source: str = "profile") -> Profile:
    """Parse and check profile TOML text; ``source`` (the file name) starts every error message."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{source}: not valid TOML: {exc}") from exc
    try:
        parsed = msgspec.convert(raw, ProfileFile)
    except msgspec.ValidationError as exc:
        raise ProfileError(f"{source}: {_explain(exc, raw)}") from None
    if parsed.device.name in _FIRMWARE_ROLES:
        raise ProfileError(
            f"{source}: device, field 'name': {parsed.device.name!r} is a streetedge node role; "
            "a profile needs a name of its own"
        )
    try:
        rows = [_row(i, reg) for i, reg in enumerate(parsed.register)]
    except _RegisterProblemError as problem:
        raise ProfileError(f"{source}: {problem}") from None
    from gateway.contracts import (
        POLL_COUNTER,
        POLL_IDENTITY,
        POLL_MEASURE,
        POLL_SETTING,
        RegisterMapError,
        register_map,
    )

    try:
        regmap = register_map(parsed.device.name, rows, 0, max_read=parsed.device.max_read)
    except RegisterMapError as exc:
        raise ProfileError(f"{source}: {_reword(str(exc), parsed.register)}") from None
    _check_spans(source, parsed, regmap)
    # The poll planner reads a map's own declarations before the role tables' (gateway/polling/poll_plan.py).
    classes = {"measure": POLL_MEASURE, "counter": POLL_COUNTER, "setting": POLL_SETTING, "identity": POLL_IDENTITY}
    regmap.poll_classes = {reg.name: classes[reg.poll] for reg in parsed.register}
    return Profile(parsed.device, source, regmap)


class _RegisterProblemError(Exception):
    def __init__(self, index: int, name: str, field: str, message: str) -> None:
        super().__init__(f"register {name!r} (register[{index}]), field {field!r}: {message}")


def _row(index: int, reg: RegisterSection) -> tuple[object, ...]:
    """One ``[[register]]`` -> a register-map row (engineering bounds turned into raw ones)."""

    def fail(field: str, message: str) -> _RegisterProblemError:
        return _RegisterProblemError(index, reg.name, field, message)

    if reg.name in _RESERVED:
        raise fail("name", f"{reg.name!r} is reserved: {_RESERVED[reg.name]}; name the value otherwise")
    bit = reg.function in ("coil", "discrete_input")
    type_name = reg.type or ("bool" if bit else None)
    if type_name is None:
        numbers = ", ".join(t for t in _TYPES if t != "bool")
        raise fail("type", f"missing: one of {numbers} for a {reg.function} register")
    if bit and type_name != "bool":
        raise fail("type", f"a {reg.function.replace('_', ' ')} is one bit: bool, got {type_name!r}")
    if reg.word_order != "high_first" and type_name not in ("u32", "s32", "float32"):
        raise fail("word_order", f"only a 32-bit value has a word order, this one is {type_name}")
    if type_name in ("float32", "bool") and reg.scale != 0:
        raise fail("scale", f"a {type_name} takes scale 0, got {reg.scale}")
    if reg.unit is not None and reg.unit not in SENML_UNITS:
        raise fail("unit", f"{reg.unit!r} is not a SenML unit{_suggest(reg.unit, SENML_UNITS)}")
    if reg.writable and reg.function not in ("holding", "coil"):
        raise fail("writable", f"only holding registers and coils can be written, this is a {reg.function}")
    if not reg.writable and (reg.min is not None or reg.max is not None):
        field = "min" if reg.min is not None else "max"
        raise fail(field, "a range is what a command may write: only for writable values")
    lo, hi = _raw_bounds(reg, type_name, fail)
    order = 1 if reg.word_order == "low_first" else 0
    access = 1 if reg.writable else 0
    return (reg.name, _TABLES[reg.function], reg.address, _TYPES[type_name], reg.scale, reg.unit, access,
            lo, hi, reg.doc, order)


def _raw_bounds(
    reg: RegisterSection, type_name: str, fail: Callable[[str, str], Exception]
) -> tuple[int | float, int | float]:
    if type_name == "float32":
        lo_f = -_F32_LIMIT if reg.min is None else float(reg.min)
        hi_f = _F32_LIMIT if reg.max is None else float(reg.max)
        for field, bound in (("min", lo_f), ("max", hi_f)):
            if not math.isfinite(bound) or abs(bound) > _F32_LIMIT:
                raise fail(field, f"{bound} is beyond a float32")
        if reg.writable and (reg.min is None or reg.max is None):
            raise fail("min" if reg.min is None else "max", _NEEDS_RANGE)
        if lo_f > hi_f:
            raise fail("max", f"{reg.max} is below min {reg.min}")
        return lo_f, hi_f
    limit_lo, limit_hi = _INT_LIMITS[type_name]
    if type_name == "bool":
        if reg.min is not None or reg.max is not None:
            raise fail("min" if reg.min is not None else "max", "a bool writes false or true: no range")
        return 0, 1
    if reg.writable and (reg.min is None or reg.max is None):
        raise fail("min" if reg.min is None else "max", _NEEDS_RANGE)
    bounds: list[int] = []
    for field, value, default in (("min", reg.min, limit_lo), ("max", reg.max, limit_hi)):
        if value is None:
            bounds.append(default)
            continue
        steps = value / 10**reg.scale if reg.scale > 0 else value * 10**-reg.scale
        if not math.isfinite(steps) or abs(steps - round(steps)) > 1e-6 * max(1.0, abs(steps)):
            raise fail(field, f"{value} is not a whole number of steps of 1e{reg.scale}")
        raw = round(steps)
        if not limit_lo <= raw <= limit_hi:
            low, high = _eng(limit_lo, reg.scale), _eng(limit_hi, reg.scale)
            raise fail(field, f"{value} does not fit a {type_name} at scale {reg.scale} ({low}..{high})")
        bounds.append(raw)
    if bounds[0] > bounds[1]:
        raise fail("max", f"{reg.max} is below min {reg.min}")
    return bounds[0], bounds[1]


def _eng(raw: int, scale: int) -> int | float:
    step: int = 10 ** abs(scale)
    return raw * step if scale >= 0 else raw / step


def _check_spans(source: str, parsed: ProfileFile, regmap: RegisterMap) -> None:
    """The gateway reads each table as one span: registers far apart would read thousands of unused ones."""
    for function, table in _TABLES.items():
        blocks = regmap.blocks(table)
        if len(blocks) <= _MAX_REQUESTS:
            continue
        regs = [(i, r) for i, r in enumerate(parsed.register) if r.function == function]
        i, last = max(regs, key=lambda item: item[1].address)
        first = min(r.address for _, r in regs)
        raise ProfileError(
            f"{source}: register {last.name!r} (register[{i}]), field 'address': the {function} values span "
            f"{first}..{last.address}, {len(blocks)} requests of at most {parsed.device.max_read}; the gateway "
            f"reads a table from its lowest to its highest address in at most {_MAX_REQUESTS} requests"
        )


_AT = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_INDEX = re.compile(r"^\.register\[(\d+)\](?:\.(\w+))?$")


def _explain(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    """msgspec's message re-worded: the register by name and index, the field, a suggestion for typos."""
    found = _AT.match(str(exc))
    assert found is not None  # the pattern matches any text
    problem, path = found["problem"], found["path"] or ""
    field: str | None = None
    unknown = re.match(r"Object contains unknown field `(\w+)`", problem)
    if unknown:
        field = unknown[1]
        section: type[msgspec.Struct] = ProfileFile
        if path.startswith(".register"):
            section = RegisterSection
        elif path == ".device":
            section = DeviceSection
        problem = f"unknown field{_suggest(field, (f.name for f in msgspec.structs.fields(section)))}"
    else:
        problem = problem[0].lower() + problem[1:]
    missing = re.match(r"object missing required field `(\w+)`", problem)
    if missing:
        field = missing[1]
        problem = "missing (required)"
    enum = re.match(r"invalid enum value '(.*)'", problem)
    where = _INDEX.match(path)
    if where:
        index = int(where[1])
        field = field or where[2]
        registers = raw.get("register")
        entry = registers[index] if isinstance(registers, list) and index < len(registers) else {}
        name = entry.get("name") if isinstance(entry, dict) else None
        if enum and field in ("function", "type", "word_order", "poll"):
            choices = _choices(RegisterSection, field)
            shown = ", ".join(repr(c) for c in choices)
            problem = f"expected one of {shown}, got {enum[1]!r}{_suggest(enum[1], choices)}"
        who = f"register {name!r} (register[{index}])" if isinstance(name, str) else f"register[{index}]"
        return f"{who}, field {field!r}: {problem}" if field else f"{who}: {problem}"
    section_path = path.lstrip(".")
    if section_path.startswith("device."):
        section_path, field = "device", section_path.split(".", 1)[1]
    place = section_path or "top level"
    return f"{place}, field {field!r}: {problem}" if field else f"{place}: {problem}"


def _choices(struct: type[msgspec.Struct], field: str) -> list[str]:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    for f in info.fields:
        if f.name == field:
            t = f.type
            options = t.types if isinstance(t, msgspec.inspect.UnionType) else (t,)
            return sorted(str(v) for o in options if isinstance(o, msgspec.inspect.LiteralType) for v in o.values)
    return []


def _reword(message: str, registers: list[RegisterSection]) -> str:
    """``role x, register y, field z: ...`` (from the register map) -> the file's words."""
    found = re.match(r"role \w+, register '?(\w+)'?, field (\w+): (.*)$", message, re.S)
    if not found:
        return message
    name, field, problem = found.groups()
    index = next((i for i, r in enumerate(registers) if r.name == name), None)
    who = f"register {name!r}" + (f" (register[{index}])" if index is not None else "")
    field = {"table": "function", "access": "writable", "minimum": "min", "maximum": "max"}.get(field, field)
    if problem == "declared twice":
        first = next(i for i, r in enumerate(registers) if r.name == name)
        last = max(i for i, r in enumerate(registers) if r.name == name)
        who = f"register {name!r} (register[{last}])"
        problem = f"the name is already used by register[{first}]"
    return f"{who}, field {field!r}: {problem}"


def _suggest(word: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
