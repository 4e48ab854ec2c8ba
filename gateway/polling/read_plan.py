"""Read plans: a role's register map compiled once into requests and one struct format per table.

Decoding a poll register by register in Python costs about a microsecond per
register; a plan turns the words of a whole table into raw values with one
``struct`` call (U16 ``H``, S16 ``h``, U32 ``I``, S32 ``i``, F32 ``f``, big
endian, high word first; unassigned words inside a block are padding). A
table holding a 32-bit value sent low word first (some third-party devices)
is decoded register by register instead. Coils and discrete inputs arrive as
one 0/1 "word" per bit and decode the same way. The plan is derived from
``protocols/roles`` (or a device profile) and restates nothing: it is checked
against :meth:`RegisterMap.decode` in the tests.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

from gateway.contracts import TABLE_NAMES, TABLES, Number, Register, RegisterMap
from gateway.errors import GatewayError

Readings = list[tuple[Register, Number]]
"""``(register, raw value)`` pairs of one poll, in register-map order."""

_CODES = {0: "H", 1: "h", 2: "I", 3: "i", 4: "H", 5: "f"}  # regmap U16 S16 U32 S32 BOOL F32


class PlanError(GatewayError, ValueError):
    """The words read do not fit the plan (wrong start or count)."""


class _TablePlan:
    """One table: where its single block starts, how many words, and the struct that decodes it."""

    __slots__ = ("count", "fmt", "registers", "start", "swapped", "words")

    def __init__(self, regmap: RegisterMap, table: int) -> None:
        blocks = regmap.blocks(table)
        self.start = blocks[0][0]
        self.count = sum(count for _, count in blocks)
        regs = sorted((r for r in regmap.registers if r.table == table), key=lambda r: r.address)
        fmt = [">"]
        at = self.start
        for reg in regs:
            if reg.address > at:
                fmt.append(f"{2 * (reg.address - at)}x")
            fmt.append(_CODES[reg.type])
            at = reg.address + reg.width
        if at < self.start + self.count:
            fmt.append(f"{2 * (self.start + self.count - at)}x")
        self.fmt = struct.Struct("".join(fmt))
        self.words = struct.Struct(f">{self.count}H")
        self.registers = regs
        self.swapped = any(reg.order and reg.width == 2 for reg in regs)

    def raws(self, words: Sequence[int]) -> Sequence[Number]:
        """Raw values of the table's registers, in address order."""
        if self.swapped:
            return [reg.from_words(words, reg.address - self.start) for reg in self.registers]
        return self.fmt.unpack(self.words.pack(*words))


class ReadPlan:
    """How to read and decode every register of one role.

    Attributes:
        regmap: the role's register map.
        tables: ``(table, start, count)`` to read, in :data:`TABLES` order (holding,
            input, coil, discrete input); one entry per block of ``regmap.blocks``.
    """

    def __init__(self, regmap: RegisterMap) -> None:
        self.regmap = regmap
        self.tables: list[tuple[int, int, int]] = [
            (table, start, count) for table in TABLES for start, count in regmap.blocks(table)
        ]
        self._plans = {t: _TablePlan(regmap, t) for t in TABLES if regmap.blocks(t)}
        order = {id(reg): i for i, reg in enumerate(regmap.registers)}
        decoded = [reg for t in TABLES if t in self._plans for reg in self._plans[t].registers]
        # Position in the decoded sequence of each register, in map order.
        self._order = sorted(range(len(decoded)), key=lambda i: order[id(decoded[i])])
        self._in_map_order = self._order == list(range(len(decoded)))
        self._decoded = decoded

    def decode(self, blocks: Mapping[int, tuple[int, Sequence[int]]]) -> Readings:
        """Words of every table (as the bus returns them) -> ``(register, raw)`` in register-map order."""
        raws: list[Number] = []
        for table, plan in self._plans.items():
            start, words = blocks[table]
            if start != plan.start or len(words) != plan.count:
                raise PlanError(
                    f"{self.regmap.role}: {TABLE_NAMES[table]} words {start}+{len(words)} do not fit "
                    f"the plan {plan.start}+{plan.count}"
                )
            raws.extend(plan.raws(words))
        decoded = self._decoded
        if self._in_map_order:
            return list(zip(decoded, raws, strict=True))
        return [(decoded[i], raws[i]) for i in self._order]

    def decode_bytes(self, table: int, data: bytes | memoryview) -> tuple[Number, ...]:
        """Raw values of one register table straight from the register bytes of a read response."""
        plan = self._plans[table]
        if plan.swapped:
            return tuple(plan.raws(plan.words.unpack(data)))
        return plan.fmt.unpack(data)


_plans: dict[str, ReadPlan] = {}


def plan_for(regmap: RegisterMap) -> ReadPlan:
    """The (cached) plan of a role's register map."""
    plan = _plans.get(regmap.role)
    if plan is None or plan.regmap is not regmap:
        plan = ReadPlan(regmap)
        _plans[regmap.role] = plan
    return plan
