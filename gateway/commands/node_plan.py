"""What one node's part of a command is: writes, the reads that confirm them, and the judge of those reads.

Plans are pure data, made by :mod:`gateway.commands.actions` and carried out by
:mod:`gateway.commands.executor`. The registers read are reduced register maps (only
the registers concerned, so a read-back costs a few bytes on the line), or
plain word maps for the blocks a role keeps outside its map (the lamp's
program window and calendar).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.contracts import HOLDING, RW, U16, Number, RegisterMap, register_map

if TYPE_CHECKING:
    from gateway.service.config import NodeConfig

Run = tuple[int, tuple[int, ...]]
"""A write of holding registers: (address, words); of coils: (address, bits as 0/1)."""


class Read:
    """One read of a confirmation.

    Attributes:
        regmap: the registers to read (a reduced or word map; one request per block).
        table: HOLDING or INPUT.
        select: writes to the same node just before the read (e.g. loading a
            program into the window the read then shows).
        unit: read another unit than the node's (a unit change); None: the node's.
    """

    __slots__ = ("regmap", "select", "table", "unit")

    def __init__(
        self, regmap: RegisterMap, table: int, select: Sequence[Run] = (), unit: int | None = None
    ) -> None:
        self.regmap = regmap
        self.table = table
        self.select = tuple(select)
        self.unit = unit


class Readback:
    """What a check judges.

    Attributes:
        reads: raw values by register name, one dict per :class:`Read`, in order.
        values: all of them merged (names of later reads win).
        before: raw values read before the writes (see :attr:`NodePlan.before`).
        now: the gateway's wall clock at the read.
        since_write: seconds since the writes went out.
    """

    __slots__ = ("before", "now", "reads", "since_write", "values")

    def __init__(
        self, reads: list[dict[str, Number]], before: Mapping[str, Number], now: float, since_write: float
    ) -> None:
        self.reads = reads
        self.values: dict[str, Number] = {}
        for found in reads:
            self.values.update(found)
        self.before = before
        self.now = now
        self.since_write = since_write


Check = Callable[[Readback], str | None]
"""Judges a read-back: the problem in a few words, or None when the node is confirmed."""
Writer = Callable[[float], list[Run]]
"""Writes that depend on the moment they go out (the clock): wall time -> runs."""


class NodePlan:
    """One node's part of a command.

    Attributes:
        node: the node.
        writes: runs to write, in order; or a :data:`Writer` for writes made
            when they go out (``key`` then tells plans that write alike).
        reads: the reads that confirm the writes.
        check: judges them.
        before: reads done before writing (the check sees them as ``before``).
        settle: seconds during which a failed read or check is tried again
            (0: one attempt); ``every`` apart.
        broadcast: whether the writes may go out as one broadcast for the bus.
        follow: after confirmation, the plan of a second step (wall time -> plan).
        coils: coil runs to write after ``writes`` (functions 05/15); never broadcast.
        repoll: the node's next poll reads every register (as after a write through the bus).
    """

    __slots__ = ("before", "broadcast", "check", "coils", "every", "follow", "key", "node", "reads", "repoll",
                 "settle", "writer", "writes")

    def __init__(
        self,
        node: NodeConfig,
        writes: list[Run] | Writer,
        reads: list[Read],
        check: Check,
        *,
        key: object = None,
        before: Sequence[Read] = (),
        settle: float = 0.0,
        every: float = 0.5,
        broadcast: bool = True,
        follow: Callable[[float], NodePlan] | None = None,
        coils: Sequence[Run] = (),
        repoll: bool = False,
    ) -> None:
        self.node = node
        self.repoll = repoll
        self.coils = list(coils)
        if callable(writes):
            self.writer: Writer | None = writes
            self.writes: list[Run] = []
            self.key = key
        else:
            self.writer = None
            self.writes = writes
            self.key = tuple(writes)
        self.reads = reads
        self.check = check
        self.before = tuple(before)
        self.settle = settle
        self.every = every
        self.broadcast = broadcast and not self.coils  # a coil write is checked by its echo, node by node
        self.follow = follow

    def writes_at(self, now: float) -> list[Run]:
        """The runs to write at wall time ``now``."""
        return self.writer(now) if self.writer is not None else self.writes

    def same_writes(self, other: NodePlan) -> bool:
        """True when both nodes get exactly the same words (so a broadcast can serve both)."""
        return self.broadcast and other.broadcast and self.key is not None and self.key == other.key


def runs(regs: Sequence[Any], raws: Mapping[str, Number]) -> list[Run]:
    """Registers (sorted by address) and their raw values -> writes; contiguous registers share one."""
    out: list[tuple[int, list[int]]] = []
    for reg in regs:
        words = list(reg.words(raws[reg.name]))
        if out and out[-1][0] + len(out[-1][1]) == reg.address:
            out[-1][1].extend(words)
        else:
            out.append((reg.address, words))
    return [(address, tuple(words)) for address, words in out]


_FIELDS = ("name", "table", "address", "type", "scale", "unit", "access", "minimum", "maximum", "doc", "order")
_GAP = 8
"""Registers further apart than this many words are read in separate requests."""
_reduced: dict[tuple[int, tuple[str, ...]], tuple[RegisterMap, RegisterMap]] = {}
_word_maps: dict[tuple[int, int], RegisterMap] = {}


def readback_map(regmap: RegisterMap, names: tuple[str, ...]) -> RegisterMap:
    """A register map holding only ``names`` of ``regmap``: reading its table reads just those registers.

    A read-back of the one or two registers a command wrote costs a few bytes on
    the line instead of the node's whole holding table.
    """
    # Keyed by the map itself, not its role: a reloaded device profile is a new map under the same role.
    key = (id(regmap), names)
    cached = _reduced.get(key)
    if cached is not None and cached[0] is regmap:
        return cached[1]
    rows = [tuple(getattr(regmap[n], f) for f in _FIELDS) for n in names]
    found = register_map(regmap.role, rows, regmap.role_id)
    _reduced[key] = (regmap, found)
    return found


def reads_for(regmap: RegisterMap, names: Sequence[str]) -> list[Read]:
    """The reads of registers ``names``: one per table, split where they lie far apart."""
    out: list[Read] = []
    regs = sorted((regmap[n] for n in names), key=lambda r: (r.table, r.address))
    group: list[Any] = []
    for reg in regs:
        if group and (reg.table != group[-1].table or reg.address - (group[-1].address + group[-1].width) > _GAP):
            out.append(Read(readback_map(regmap, tuple(r.name for r in group)), group[0].table))
            group = []
        group.append(reg)
    if group:
        out.append(Read(readback_map(regmap, tuple(r.name for r in group)), group[0].table))
    return out


def word_name(address: int) -> str:
    """The name of holding word ``address`` in a :func:`word_map`."""
    return f"w{address}"


def word_map(start: int, count: int) -> RegisterMap:
    """Plain 16-bit holding words ``start..start+count-1`` (named by :func:`word_name`), for blocks outside a map."""
    found = _word_maps.get((start, count))
    if found is None:
        rows = [(word_name(a), HOLDING, a, U16, 0, None, RW, 0, 0xFFFF, "")
                for a in range(start, start + count)]
        found = register_map("words", rows, 0)
        _word_maps[(start, count)] = found
    return found
