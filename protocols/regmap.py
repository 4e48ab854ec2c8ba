"""Register maps: one declarative table per node role, read by firmware and gateway alike.

A role module (``protocols/roles/<role>.py``) declares its registers as a tuple of
rows, each row ``(name, table, address, type, scale, unit, access, minimum,
maximum, doc)``:

- ``table``: ``HOLDING`` (function 03 to read, 06/16 to write) or ``INPUT`` (04);
  for third-party devices also ``COIL`` (01 to read, 05/15 to write) and
  ``DISCRETE`` (discrete inputs, 02). The table codes are the read function codes.
- ``type``: ``U16``, ``S16``, ``U32``, ``S32`` (two registers, high word first),
  ``BOOL`` (one register, 0 or 1) or ``F32`` (IEEE 754, high word first; for
  third-party devices). A coil or discrete input is one bit and always ``BOOL``.
- ``scale``: a power of ten: engineering value = raw * 10**scale, so that a
  value travels as an exact scaled integer until someone wants a float.
- ``unit``: a SenML unit (RFC 8428, RFC 8798) or ``None``.
- ``access``: ``RO`` or ``RW``; ``minimum``/``maximum`` bound the raw value a
  master may write (and a node may report).

A row may carry an eleventh field, the word order of a two-register value:
``HIGH_FIRST`` (the default, as Modbus itself orders bytes) or ``LOW_FIRST``
(the low word at the lower address, as some third-party devices send it).

In a bit table (``COIL``, ``DISCRETE``) one "word" is one bit, 0 or 1, so
blocks, decoding and write checks work on bits exactly as on registers.

:class:`RegisterMap` validates the table once and answers every question the
firmware (build its register bank, check a write) and the gateway (which blocks
to read, what a block means) ask of it. Nobody restates the table.
"""

import struct

from protocols.errors import ModbusException, ProtocolError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x: int) -> int:
        return x


if False:  # type checkers only; MicroPython has no typing module
    from collections.abc import Iterable, Sequence
    from typing import Any


COIL = const(1)
DISCRETE = const(2)
HOLDING = const(3)
INPUT = const(4)
TABLES = (HOLDING, INPUT, COIL, DISCRETE)
"""Every table, in the order a node's values are read and reported."""
BIT_TABLES = (COIL, DISCRETE)

HIGH_FIRST = const(0)
LOW_FIRST = const(1)

U16 = const(0)
S16 = const(1)
U32 = const(2)
S32 = const(3)
BOOL = const(4)
F32 = const(5)

RO = const(0)
RW = const(1)

TYPE_NAMES = ("u16", "s16", "u32", "s32", "bool", "f32")
_WIDTH = (1, 1, 2, 2, 1, 2)
_RAW_LIMITS = (
    (0, 0xFFFF),
    (-0x8000, 0x7FFF),
    (0, 0xFFFFFFFF),
    (-0x80000000, 0x7FFFFFFF),
    (0, 1),
    (-3.4e38, 3.4e38),
)
_FIELDS = ("name", "table", "address", "type", "scale", "unit", "access", "minimum", "maximum", "doc")
_EX_ILLEGAL_ADDRESS = const(2)
_EX_ILLEGAL_VALUE = const(3)
_FC_WRITE_MULTIPLE = const(16)
_FC_WRITE_COILS = const(15)
# Most items one read request may carry: 125 registers, 2000 bits (Modbus application protocol, 6.1-6.4).
_MAX_READ = {HOLDING: 125, INPUT: 125, COIL: 2000, DISCRETE: 2000}
_TABLE_CODES = {HOLDING: "hr", INPUT: "ir", COIL: "co", DISCRETE: "di"}


class RegisterMapError(ProtocolError):
    """A register table that contradicts itself; the message names role, register and field."""


class Register:
    """One value in a node's register map."""

    __slots__ = _FIELDS + ("width", "order")

    def __init__(
        self,
        name: str,
        table: int,
        address: int,
        type: int,
        scale: int,
        unit: "str | None",
        access: int,
        minimum: "int | float",
        maximum: "int | float",
        doc: str,
        order: int = HIGH_FIRST,
    ) -> None:
        self.name = name
        self.table = table
        self.address = address
        self.type = type
        self.scale = scale
        self.unit = unit
        self.access = access
        self.minimum = minimum
        self.maximum = maximum
        self.doc = doc
        self.width = _WIDTH[type] if 0 <= type < len(_WIDTH) else 0
        self.order = order

    def __repr__(self) -> str:
        return "<Register %s %s@%d>" % (self.name, _TABLE_CODES.get(self.table, "?"), self.address)

    def to_raw(self, value: "float | bool") -> "int | float":
        """Engineering value -> raw integer (or float for F32), checked against the register's bounds."""
        raw: "int | float"
        if self.type == F32:
            raw = float(value)
        else:
            if self.type == BOOL and (value is True or value is False):
                value = int(value)
            step: int = 10 ** abs(self.scale)
            raw = value * step if self.scale < 0 else value // step
        if isinstance(raw, float) and self.type != F32:
            rounded = int(round(raw))
            if abs(raw - rounded) > 1e-6 * max(1, abs(raw)):
                raise ValueError(
                    "%s: %r has more precision than the register's step 1e%d" % (self.name, value, self.scale)
                )
            raw = rounded
        if not self.minimum <= raw <= self.maximum:
            raise ValueError(
                "%s: %r is outside %s..%s"
                % (self.name, value, self.value(self.minimum), self.value(self.maximum))
            )
        return raw

    def value(self, raw: "int | float") -> "int | float | bool":
        """Raw integer -> engineering value (int when the scale keeps it whole)."""
        if self.type == BOOL:
            return bool(raw)
        if self.scale == 0 or self.type == F32:
            return raw
        step: int = 10 ** abs(self.scale)
        return raw * step if self.scale > 0 else raw / step

    def words(self, raw: "int | float") -> "tuple[int, ...]":
        """Raw value -> the register words that carry it on the wire."""
        t = self.type
        if t == F32:
            hi, lo = struct.unpack(">HH", struct.pack(">f", raw))
        elif t in (U32, S32):
            bits = int(raw) & 0xFFFFFFFF
            hi, lo = (bits >> 16) & 0xFFFF, bits & 0xFFFF
        else:
            return (int(raw) & 0xFFFF,)
        return (lo, hi) if self.order == LOW_FIRST else (hi, lo)

    def from_words(self, words: "Sequence[int]", offset: int = 0) -> "int | float":
        """Register words (a sequence of uint16) -> raw value."""
        t = self.type
        w0 = words[offset]
        if t == U16 or t == BOOL:
            return w0
        if t == S16:
            return w0 - 0x10000 if w0 & 0x8000 else w0
        w1 = words[offset + 1]
        if self.order == LOW_FIRST:
            w0, w1 = w1, w0
        if t == U32:
            return (w0 << 16) | w1
        if t == S32:
            raw = (w0 << 16) | w1
            return raw - 0x100000000 if raw & 0x80000000 else raw
        value: float = struct.unpack(">f", struct.pack(">HH", w0, w1))[0]
        return value


class RegisterMap:
    """The validated register table of one role: lookups, read blocks, decoding and write checks.

    ``mirrors``: ``(name, input address)`` pairs, one-word holding registers
    whose value the node also answers at that input address (not registers of
    their own: a read there is the holding word), so that a serial poll gets a
    role's measurements in one request; ``mirrors_since``: the first firmware
    version (the node's ``firmware`` register) that answers them.
    """

    def __init__(
        self, role: str, rows: "Iterable[tuple[object, ...]]", role_id: int = 0, max_read: int = 125,
        mirrors: "Iterable[tuple[str, int]]" = (), mirrors_since: int = 0,
    ) -> None:
        self.role = role
        self.role_id = role_id
        # a device may answer fewer registers per request than the protocol allows
        self.max_read = max_read
        # name -> poll class, where the map declares its own (a device profile); else the role tables'
        self.poll_classes: "dict[str, int] | None" = None
        self.registers: "list[Register]" = []
        self._by_name: "dict[str, Register]" = {}
        # address -> Register for the first word of each register, per table
        self._starts: "dict[int, dict[int, Register]]" = {t: {} for t in TABLES}
        self._size = {t: 0 for t in TABLES}
        for row in rows:
            self._add(row)
        self._blocks = {t: self._contiguous(t) for t in TABLES}
        # name -> input address that answers the same word: a serial poll reads measurements in one request
        self.mirrors: "dict[str, int]" = {}
        self.mirrors_since = mirrors_since
        for name, address in mirrors:
            self._mirror(name, address)

    def _fail(self, name: str, field: str, problem: str) -> None:
        raise RegisterMapError("role %s, register %s, field %s: %s" % (self.role, name, field, problem))

    def _add(self, row: "tuple[Any, ...]") -> None:
        if not isinstance(row, tuple) or not len(_FIELDS) <= len(row) <= len(_FIELDS) + 1:
            raise RegisterMapError(
                "role %s: a row needs %d fields (%s) and may add a word order, got %r"
                % (self.role, len(_FIELDS), ", ".join(_FIELDS), row)
            )
        reg = Register(*row)
        name = reg.name
        if not isinstance(name, str) or not name or not _is_name(name):
            self._fail(repr(name), "name", "use lower-case letters, digits and '_'")
        if name in self._by_name:
            self._fail(name, "name", "declared twice")
        if reg.table not in TABLES:
            self._fail(name, "table", "must be HOLDING, INPUT, COIL or DISCRETE, got %r" % (reg.table,))
        if reg.width == 0:
            self._fail(name, "type", "unknown type %r; known: %s" % (reg.type, ", ".join(TYPE_NAMES)))
        if reg.table in BIT_TABLES and reg.type != BOOL:
            self._fail(name, "type", "a coil or discrete input is one bit: BOOL, got %s" % TYPE_NAMES[reg.type])
        if reg.order not in (HIGH_FIRST, LOW_FIRST):
            self._fail(name, "order", "must be HIGH_FIRST or LOW_FIRST, got %r" % (reg.order,))
        if not isinstance(reg.address, int) or not 0 <= reg.address <= 0xFFFF - reg.width + 1:
            self._fail(name, "address", "must be 0..65535, got %r" % (reg.address,))
        if reg.access not in (RO, RW):
            self._fail(name, "access", "must be RO or RW")
        if reg.access == RW and reg.table not in (HOLDING, COIL):
            self._fail(name, "access", "only HOLDING registers and coils can be written")
        if not isinstance(reg.scale, int) or not -9 <= reg.scale <= 9:
            self._fail(name, "scale", "must be a power of ten between -9 and 9")
        lo, hi = _RAW_LIMITS[reg.type]
        bound_type = float if reg.type == F32 else int
        if not (isinstance(reg.minimum, bound_type) and isinstance(reg.maximum, bound_type)):
            self._fail(name, "minimum", "bounds must be %s numbers" % bound_type.__name__)
        if not lo <= reg.minimum <= reg.maximum <= hi:
            self._fail(
                name,
                "maximum",
                "need %s <= minimum <= maximum <= %s, got %r..%r" % (lo, hi, reg.minimum, reg.maximum),
            )
        starts = self._starts[reg.table]
        for a in range(reg.address, reg.address + reg.width):
            other = self._owner(reg.table, a)
            if other is not None:
                self._fail(name, "address", "overlaps %s at %d" % (other.name, a))
        starts[reg.address] = reg
        self._by_name[name] = reg
        self.registers.append(reg)
        end = reg.address + reg.width
        self._size[reg.table] = max(self._size[reg.table], end)

    def _mirror(self, name: str, address: int) -> None:
        reg = self._by_name.get(name)
        if reg is None or reg.table != HOLDING or reg.width != 1:
            self._fail(name, "mirror", "only a one-word holding register of the map can be mirrored")
        elif not isinstance(address, int) or not 0 <= address <= 0xFFFF:
            self._fail(name, "mirror", "input address must be 0..65535, got %r" % (address,))
        elif self._owner(INPUT, address) is not None or address in self.mirrors.values():
            self._fail(name, "mirror", "input %d is taken" % address)
        self.mirrors[name] = address

    def _owner(self, table: int, address: int) -> "Register | None":
        starts = self._starts[table]
        reg = starts.get(address)
        if reg is None and address > 0:
            prev = starts.get(address - 1)
            if prev is not None and prev.width == 2:
                reg = prev
        return reg

    def _contiguous(self, table: int) -> "tuple[tuple[int, int], ...]":
        # One block from the lowest to the highest address: role maps are dense by design,
        # so the gateway reads each table in one request (at most 125 registers or 2000 bits,
        # or the device's own smaller limit).
        regs = [r for r in self.registers if r.table == table]
        if not regs:
            return ()
        start = min(r.address for r in regs)
        end = max(r.address + r.width for r in regs)
        limit = min(self.max_read, _MAX_READ[table])
        blocks = []
        while start < end:
            count = min(limit, end - start)
            blocks.append((start, count))
            start += count
        return tuple(blocks)

    def __getitem__(self, name: str) -> Register:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                "role %s has no register %r%s" % (self.role, name, _suggest(name, self._by_name))
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def size(self, table: int) -> int:
        """Number of register words the table spans from address 0."""
        return self._size[table]

    def blocks(self, table: int) -> "tuple[tuple[int, int], ...]":
        """``(start, count)`` read requests that cover every register of the table."""
        return self._blocks[table]

    def at(self, table: int, address: int) -> "Register | None":
        """The register whose first word is at ``address``, or None."""
        return self._starts[table].get(address)

    def decode(self, table: int, start: int, words: "Sequence[int]") -> "list[tuple[Register, int | float]]":
        """Register words read from ``start`` -> list of ``(register, raw)`` for every whole register inside."""
        out = []
        n = len(words)
        for reg in self.registers:
            if reg.table != table:
                continue
            offset = reg.address - start
            if offset < 0 or offset + reg.width > n:
                continue
            out.append((reg, reg.from_words(words, offset)))
        return out

    def check_write(self, address: int, values: "Sequence[int]", count: int, table: int = HOLDING) -> None:
        """Raise ModbusException unless writing ``values[:count]`` from ``address`` is allowed.

        Allowed means: every word belongs to a writable holding register, whole
        registers only (no half of a 32-bit value), each raw value within bounds.
        ``table`` COIL checks a coil write instead (``values`` are bits).
        """
        fc = _FC_WRITE_COILS if table == COIL else _FC_WRITE_MULTIPLE
        end = address + count
        a = address
        while a < end:
            reg = self._starts[table].get(a)
            if reg is None or reg.access != RW or a + reg.width > end:
                raise ModbusException(
                    fc, _EX_ILLEGAL_ADDRESS, "address %d is not a writable register start" % a
                )
            raw = reg.from_words(values, a - address)
            if not reg.minimum <= raw <= reg.maximum:
                raise ModbusException(
                    fc,
                    _EX_ILLEGAL_VALUE,
                    "%s: %s outside %s..%s" % (reg.name, raw, reg.minimum, reg.maximum),
                )
            a += reg.width


def _is_name(name: str) -> bool:
    for i, ch in enumerate(name):
        if not ("a" <= ch <= "z" or ch == "_" or ("0" <= ch <= "9" and i > 0)):
            return False
    return True


def _suggest(name: str, known: "Iterable[str]") -> str:
    # Cheap "did you mean": known names sharing the longest prefix.
    best = None
    best_len = 0
    for k in known:
        n = 0
        while n < len(k) and n < len(name) and k[n] == name[n]:
            n += 1
        if n > best_len:
            best, best_len = k, n
    return "; did you mean %r?" % best if best is not None and best_len >= 2 else ""


__all__ = [
    "BIT_TABLES",
    "BOOL",
    "COIL",
    "DISCRETE",
    "F32",
    "HIGH_FIRST",
    "HOLDING",
    "INPUT",
    "LOW_FIRST",
    "RO",
    "RW",
    "S16",
    "S32",
    "TABLES",
    "U16",
    "U32",
    "Register",
    "RegisterMap",
    "RegisterMapError",
]
