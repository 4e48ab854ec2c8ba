"""Poll plans: read only the registers that are due, in the fewest requests the line can carry cheapest.

Every register belongs to a poll class (declared beside the register tables,
``COUNTERS``, ``SETTINGS`` and ``IDENTITY`` in ``protocols/roles``; the rest
are measurements):

- ``MEASURE``: every poll, at the node's interval;
- ``COUNTER``: every :data:`COUNTER_EVERY` th poll;
- ``SETTING``: at the first poll, when the node's ``settings_changes`` register
  (a counter: read every few polls) moves (every accepted write of a setting
  moves it, whoever the master), and on request;
- ``IDENTITY``: at the first poll, after a reboot (``uptime`` went back), and
  on request.

The poll after a command was written to the node through this gateway reads
every class: a command may move settings, the clock and counters at once.

Which registers are measurements is the role table's call: the common rows'
``node_status``, ``event_next`` and ``settings_changes`` are counters (the
role's ``status`` repeats the alarm bits, the gateway follows its own
commands at once), so that a lamp's routine poll is two requests.

:func:`plan_requests` merges the registers due into read requests: runs of
adjacent registers always share a request, and a gap between two runs is read
along (and thrown away) when that costs the wire less than a second request,
the break-even computed by :class:`LineCost` from the bit rate and the
turnaround. :class:`NodePolls` keeps, per node, the last raw value of every
register, so that each poll still reports every register of the map (the ones
not read this time with the value last read): births, SenML and compact
messages keep their shape, and the line carries only what changes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, Protocol

from gateway.contracts import (
    BIT_TABLES,
    INPUT,
    POLL_COUNTER,
    POLL_IDENTITY,
    POLL_MEASURE,
    POLL_SETTING,
    TABLE_NAMES,
    TABLES,
    Number,
    Register,
    RegisterMap,
    poll_declarations,
)
from gateway.errors import GatewayError

MEASURE = POLL_MEASURE
"""Poll class of a value read at every poll."""
COUNTER = POLL_COUNTER
"""Poll class of a total that only grows: read every :data:`COUNTER_EVERY` th poll."""
SETTING = POLL_SETTING
"""Poll class of a value only a write changes: read when ``settings_changes`` moves."""
IDENTITY = POLL_IDENTITY
"""Poll class of a value fixed while the node runs: read at start and after a reboot."""
CLASS_NAMES = {MEASURE: "measure", COUNTER: "counter", SETTING: "setting", IDENTITY: "identity"}
EVERYTHING = frozenset(CLASS_NAMES)
"""Every class: a node's first poll, and a poll on request."""
COUNTER_EVERY = 10
"""Counters are read at every this many polls of a node."""
SETTINGS_TRIGGER = "settings_changes"
"""The register whose change makes the next poll read the settings."""
REBOOT_TRIGGER = "uptime"
"""The register whose going back (a reboot) makes the next poll read everything."""
MAX_READ = 125
"""Registers one read request may ask for (Modbus application protocol, functions 03 and 04)."""
MAX_READ_BITS = 2000
"""Coils or discrete inputs one read request may ask for (functions 01 and 02)."""

_CODES = {0: "H", 1: "h", 2: "I", 3: "i", 4: "H", 5: "f"}  # regmap U16 S16 U32 S32 BOOL F32

Request = tuple[int, int, int]
"""One read: ``(table, start, count)``."""


class LineCost:
    """The wire cost of read requests on one line, in character times.

    A read request is 8 bytes; its answer 5 bytes plus 2 per register; each
    frame is followed by the inter-frame silence t3.5 (3.5 characters, 1.75 ms
    above 19200 bit/s); the node takes ``turnaround`` seconds to start
    answering. A Modbus TCP line (``baud`` None) has no characters to count:
    a request there costs about as much as :data:`TCP_REQUEST_WORDS` words.

    Args:
        baud: bit rate of the serial line, None for Modbus TCP.
        bits: bits per character (11: start, 8 data, parity or a second stop, stop).
        turnaround: seconds a node takes to answer a request.
    """

    TCP_REQUEST_WORDS = 60

    def __init__(self, baud: int | None, *, bits: int = 11, turnaround: float = 0.0) -> None:
        self.baud = baud
        self.bits = bits
        self.turnaround = turnaround
        if baud is None:
            self.char = 0.0
            self.request_words = float(self.TCP_REQUEST_WORDS)
            return
        self.char = bits / baud
        fixed = (8 + 5) * self.char + 2 * self.silence() + turnaround
        self.request_words = fixed / (2 * self.char)

    def silence(self) -> float:
        """The inter-frame silence t3.5 in seconds (the spec fixes 1.75 ms above 19200 bit/s)."""
        if self.baud is None:
            return 0.0
        return 0.00175 if self.baud > 19200 else 3.5 * self.char

    def break_even(self) -> int:
        """The widest gap (in words) cheaper to read along than to skip with a second request."""
        return int(self.request_words)

    def seconds(self, requests: Iterable[Request]) -> float:
        """Wire time of ``requests`` (each frame with its t3.5, plus the node's turnaround)."""
        total = 0.0
        for table, _, count in requests:
            data = (count + 7) // 8 if table in BIT_TABLES else 2 * count  # coils: 8 to a byte
            total += (8 + 5 + data) * self.char + 2 * self.silence() + self.turnaround
        return total


def poll_classes(regmap: RegisterMap) -> dict[str, int]:
    """The poll class of every register of ``regmap`` by name (MEASURE unless declared otherwise).

    The declarations come from the map's ``poll_classes`` (a device profile's
    ``poll`` fields: name -> class) or from the role module of
    ``protocols/roles`` and its common rows.
    """
    own: Mapping[str, int] | None = regmap.poll_classes
    declared = poll_declarations(regmap.role) if own is None else dict(own)
    return {reg.name: declared.get(reg.name, MEASURE) for reg in regmap.registers}


class Span(Protocol):
    """Where the words of a value sit: a register of the map, or the input word that mirrors one."""

    @property
    def table(self) -> int: ...
    @property
    def address(self) -> int: ...
    @property
    def width(self) -> int: ...


class _Place(NamedTuple):
    """A register's words as a plan reads them: its own place, or its mirror in the input table."""

    table: int
    address: int
    width: int
    slot: int  # index in the map's registers
    reg: Register


def mirrors(regmap: RegisterMap) -> dict[str, int]:
    """The map's mirrors, name -> input address (``protocols.regmap.RegisterMap.mirrors``; none for a profile)."""
    found: dict[str, int] | None = getattr(regmap, "mirrors", None)
    return found or {}


def plan_requests(registers: Iterable[Span], cost: LineCost, max_words: int = MAX_READ) -> list[Request]:
    """The read requests that cover ``registers``: table by table, by address, gaps bridged when cheaper.

    ``max_words`` bounds a register read; a bit read (coils, discrete inputs)
    may ask for 16 times as many bits, a gap of bits costs a 16th of a word's.
    """
    requests: list[Request] = []
    regs = list(registers)
    for table in TABLES:
        scale = 16 if table in BIT_TABLES else 1
        bridge, limit = cost.break_even() * scale, min(max_words * scale, MAX_READ_BITS)
        spans = sorted((r.address, r.address + r.width) for r in regs if r.table == table)
        start = end = -1
        for lo, hi in spans:
            if start >= 0 and lo - end <= bridge and max(hi, end) - start <= limit:
                end = max(end, hi)
                continue
            if start >= 0:
                requests.append((table, start, end - start))
            start, end = lo, hi
        if start >= 0:
            requests.append((table, start, end - start))
    return requests


class PollPlanError(GatewayError, ValueError):
    """The words read do not fit the plan's requests (a node that answered short)."""


class PollPlan:
    """The requests of one set of poll classes for one role, and how to decode their words.

    Attributes:
        classes: the poll classes read.
        requests: ``(table, start, count)`` in the order they go out.
        registers: the registers read, in map order: those of ``classes`` and any other
            that a request carries whole (inside a bridged gap).
        words: register words the registers of ``classes`` need (without bridged gaps).

    On a serial line (``cost.baud`` set) and with ``use_mirrors``, a due
    register that the map mirrors in the input table (``regmap.mirrors``: a
    lamp's ``dim_level`` and ``relay``) is read at its mirror, so that a lamp's
    measurements are one run of input words: one request.
    """

    def __init__(self, regmap: RegisterMap, classes: frozenset[int], cost: LineCost, *,
                 use_mirrors: bool = False) -> None:
        by_name = poll_classes(regmap)
        self.regmap = regmap
        self.classes = classes
        places = [_Place(r.table, r.address, r.width, i, r) for i, r in enumerate(regmap.registers)]
        # On a serial line a due register with a mirror is read there: the node's measurements in one run.
        # (On TCP a second request is nearly free, and simulators there serve the map alone.)
        mirrored = mirrors(regmap) if use_mirrors and cost.baud is not None else {}
        at = {reg.name: i for i, reg in enumerate(regmap.registers)}
        extra = {name: _Place(INPUT, address, 1, at[name], regmap.registers[at[name]])
                 for name, address in mirrored.items()}
        due = [extra.get(p.reg.name, p) for p in places if by_name[p.reg.name] in classes]
        self.requests = plan_requests(due, cost)
        self.words = sum(p.width for p in due)
        self._decoders: list[tuple[struct.Struct, struct.Struct, list[int], list[tuple[int, Register]] | None]] = []
        taken: set[int] = set()
        for table, start, count in self.requests:
            # Every whole register the request carries is decoded, due or not: words read along in a
            # bridged gap cost nothing more to keep (a lamp's firmware and counters sit in its measurements).
            inside = sorted(
                (p for p in [*places, *extra.values()] if p.table == table and start <= p.address
                 and p.address + p.width <= start + count and p.slot not in taken),
                key=lambda p: p.address,
            )
            fmt = [">"]
            word = start
            kept: list[_Place] = []
            for place in inside:
                if place.slot in taken:  # a register and its mirror in one request: once is enough
                    continue
                if place.address > word:
                    fmt.append(f"{2 * (place.address - word)}x")
                fmt.append(_CODES[place.reg.type])
                word = place.address + place.width
                taken.add(place.slot)
                kept.append(place)
            if word < start + count:
                fmt.append(f"{2 * (start + count - word)}x")
            # A device with its low word first decodes register by register (the struct is high word first).
            swapped = [(p.address - start, p.reg) for p in kept] if any(
                getattr(p.reg, "order", 0) and p.width == 2 for p in kept) else None
            self._decoders.append((struct.Struct(f">{count}H"), struct.Struct("".join(fmt)),
                                   [p.slot for p in kept], swapped))
        self.registers = [reg for i, reg in enumerate(regmap.registers) if i in taken]

    def decode(self, answers: Sequence[Sequence[int]]) -> list[tuple[int, Number]]:
        """Words of each request, in request order -> ``(index in the map, raw)`` of every register read."""
        if len(answers) != len(self._decoders):
            raise PollPlanError(f"{self.regmap.role}: {len(answers)} answers to {len(self._decoders)} requests")
        out: list[tuple[int, Number]] = []
        for (table, start, count), words, (packer, unpacker, where, swapped) in zip(
            self.requests, answers, self._decoders, strict=True
        ):
            if len(words) != count:
                raise PollPlanError(
                    f"{self.regmap.role}: {TABLE_NAMES[table]} {start}+{count} answered with {len(words)} words"
                )
            if swapped is None:
                out.extend(zip(where, unpacker.unpack(packer.pack(*words)), strict=True))
            else:
                out.extend(zip(where, (reg.from_words(words, at) for at, reg in swapped), strict=True))
        return out


_plans: dict[tuple[str, int, frozenset[int], int | None, float, bool], PollPlan] = {}


def plan_for(regmap: RegisterMap, classes: frozenset[int], cost: LineCost, *, use_mirrors: bool = False) -> PollPlan:
    """The (cached) plan reading ``classes`` of ``regmap`` on a line of ``cost`` (mirrors: see :class:`PollPlan`)."""
    key = (regmap.role, id(regmap), classes, cost.baud, cost.turnaround, use_mirrors)
    plan = _plans.get(key)
    if plan is None or plan.regmap is not regmap:
        plan = _plans[key] = PollPlan(regmap, classes, cost, use_mirrors=use_mirrors)
    return plan


class NodePolls:
    """One node's polling memory: which classes are due next, and the last raw value of every register.

    Args:
        regmap: the node's register map.
        counter_every: counters are read every this many polls.
    """

    def __init__(self, regmap: RegisterMap, counter_every: int = COUNTER_EVERY) -> None:
        self.regmap = regmap
        self.counter_every = max(1, counter_every)
        self.raws: list[Number | None] = [None] * len(regmap.registers)
        self.polls = 0
        self.fresh = 0
        """Register values read from the node (not repeated from memory) since the start."""
        self.settings_reads = 0
        """Polls that read the settings."""
        self.mirrors = False
        """Whether polls read the map's mirrors: once the node's ``firmware`` is known to answer them."""
        self.commands = 0
        """The bus's count of commands to this node when the poller last looked (see ``Bus.commands_to``)."""
        self._want: set[int] = set(EVERYTHING)
        names = [reg.name for reg in regmap.registers]
        self._settings_at = names.index(SETTINGS_TRIGGER) if SETTINGS_TRIGGER in names else -1
        self._uptime_at = names.index(REBOOT_TRIGGER) if REBOOT_TRIGGER in names else -1
        self._firmware_at = names.index("firmware") if mirrors(regmap) and "firmware" in names else -1
        self._mirrors_since: int = getattr(regmap, "mirrors_since", 0)

    def request(self, classes: Iterable[int] = EVERYTHING) -> None:
        """Read ``classes`` (all by default) at the next poll, whatever their rhythm."""
        self._want.update(classes)

    def due(self) -> frozenset[int]:
        """The classes the next poll reads."""
        due = {MEASURE, *self._want}
        if self.polls % self.counter_every == 0:
            due.add(COUNTER)
        if any(raw is None for raw in self.raws):
            due = set(EVERYTHING)  # nothing may be reported from memory that was never read
        return frozenset(due)

    def absorb(self, plan: PollPlan, read: Sequence[tuple[int, Number]]) -> list[tuple[Register, Number]]:
        """Take one poll's values; every register of the map with its latest raw value, in map order."""
        raws = self.raws
        settings_before = raws[self._settings_at] if self._settings_at >= 0 else None
        uptime_before = raws[self._uptime_at] if self._uptime_at >= 0 else None
        for index, raw in read:
            raws[index] = raw
        self.polls += 1
        self.fresh += len(read)
        if self._firmware_at >= 0:
            firmware = raws[self._firmware_at]
            self.mirrors = firmware is not None and firmware >= self._mirrors_since
        self._want -= plan.classes
        if SETTING in plan.classes:
            self.settings_reads += 1
        if self._settings_at >= 0 and settings_before is not None and raws[self._settings_at] != settings_before:
            self._want.add(SETTING)
        if self._uptime_at >= 0 and uptime_before is not None:
            uptime = raws[self._uptime_at]
            if uptime is not None and uptime < uptime_before:
                self._want.update(EVERYTHING)  # a reboot: firmware, boot record and settings may all be new
        return [(reg, raw) for reg, raw in zip(self.regmap.registers, raws, strict=True) if raw is not None]
