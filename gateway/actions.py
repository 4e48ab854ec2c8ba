"""What each command action writes to a node, and how the read-back confirms it.

An action becomes one :class:`NodePlan` per targeted node: register writes
(in register-map terms, turned into contiguous word runs) and a check of the
node's registers read back afterwards. Plans are pure; the router executes
them. Which registers an action uses comes from the node's register map
(``protocols/roles``): a node whose role lacks them cannot take the action
(``bad_parameters``, naming the register).

=================  ==================================  ====================================
action             writes                              confirmed when the read-back shows
=================  ==================================  ====================================
``dim``            ``dim_level`` = level               that level
``switch``         ``relay`` = on                      that relay state
``time_sync``      ``clock`` = the gateway's time      a clock within :data:`CLOCK_TOLERANCE`
                                                       of the gateway's time at the read
=================  ==================================  ====================================
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from gateway.commands import BAD_PARAMETERS, Command, CommandRejected
from gateway.contracts import Number, Register, RegisterMap

if TYPE_CHECKING:
    from gateway.config import NodeConfig

CLOCK_TOLERANCE = 3.0
"""Seconds a node's clock may differ from the gateway's at read-back after a time sync."""

Check = Callable[[Mapping[str, Number], float], str | None]
"""Read-back check: (raw values by register name, gateway time now) -> problem, or None when confirmed."""


class NodePlan:
    """One node's part of a command.

    Attributes:
        node: the node.
        writes: ``(address, words)`` runs to write, in order (holding registers).
        readback: the registers to read back (a reduced map: one short read).
        check: judges the read-back (see :data:`Check`).
    """

    __slots__ = ("check", "node", "readback", "writes")

    def __init__(
        self, node: NodeConfig, writes: list[tuple[int, tuple[int, ...]]], readback: RegisterMap, check: Check
    ) -> None:
        self.node = node
        self.writes = writes
        self.readback = readback
        self.check = check

    def same_writes(self, other: NodePlan) -> bool:
        """True when both nodes get exactly the same words (so a broadcast can serve both)."""
        return self.writes == other.writes


def plan_node(command: Command, node: NodeConfig, regmap: RegisterMap, now: float) -> NodePlan:
    """The plan of ``command`` for one node; CommandRejected(bad_parameters) if the node cannot do it."""
    values: dict[str, Number]
    if command.action == "dim":
        values = {"dim_level": command.params["level"]}
    elif command.action == "switch":
        values = {"relay": bool(command.params["on"])}
    elif command.action == "time_sync":
        values = {"clock": int(now)}
    else:
        raise CommandRejected(BAD_PARAMETERS, f"{command.action} is not a node action", command_id=command.id)
    regs = _registers(command, node, regmap, list(values))
    raws = {}
    for reg in regs:
        try:
            raws[reg.name] = reg.to_raw(values[reg.name])
        except ValueError as exc:
            raise CommandRejected(BAD_PARAMETERS, f"{node.id}: {exc}", command_id=command.id) from None
    writes = _runs(regs, raws)
    readback = readback_map(regmap, tuple(r.name for r in regs))
    if command.action == "time_sync":
        return NodePlan(node, writes, readback, _clock_check(regmap["clock"]))
    return NodePlan(node, writes, readback, _equal_check(regs, raws))


def _registers(command: Command, node: NodeConfig, regmap: RegisterMap, names: list[str]) -> list[Register]:
    for name in names:
        if name not in regmap:
            raise CommandRejected(
                BAD_PARAMETERS,
                f"{node.id} ({node.role}) cannot {command.action}: its role has no register {name!r}",
                command_id=command.id,
            )
    return sorted((regmap[n] for n in names), key=lambda r: r.address)


def _runs(regs: list[Register], raws: Mapping[str, Number]) -> list[tuple[int, tuple[int, ...]]]:
    """Contiguous registers become one write (address, words)."""
    runs: list[tuple[int, list[int]]] = []
    for reg in regs:
        words = list(reg.words(raws[reg.name]))
        if runs and runs[-1][0] + len(runs[-1][1]) == reg.address:
            runs[-1][1].extend(words)
        else:
            runs.append((reg.address, words))
    return [(address, tuple(words)) for address, words in runs]


def _equal_check(regs: list[Register], raws: Mapping[str, Number]) -> Check:
    def check(found: Mapping[str, Number], now: float) -> str | None:
        for reg in regs:
            got = found.get(reg.name)
            if got != raws[reg.name]:
                shown = "nothing" if got is None else reg.value(got)
                return f"read back {reg.name} {shown}, expected {reg.value(raws[reg.name])}"
        return None

    return check


def _clock_check(reg: Register) -> Check:
    def check(found: Mapping[str, Number], now: float) -> str | None:
        got = found.get(reg.name)
        if got is None:
            return "read back no clock"
        if abs(float(got) - now) > CLOCK_TOLERANCE:
            return f"node clock {int(got)} is {float(got) - now:+.0f} s from the gateway's"
        return None

    return check


_regmap_module: Any = importlib.import_module("protocols.regmap")
_FIELDS = ("name", "table", "address", "type", "scale", "unit", "access", "minimum", "maximum", "doc")
_readback_maps: dict[tuple[str, tuple[str, ...]], RegisterMap] = {}


def readback_map(regmap: RegisterMap, names: tuple[str, ...]) -> RegisterMap:
    """A register map holding only ``names`` of ``regmap``: reading its table reads just those registers.

    A read-back of the one or two registers a command wrote costs a few bytes on
    the line instead of the node's whole holding table.
    """
    key = (regmap.role, names)
    found = _readback_maps.get(key)
    if found is None:
        rows = [tuple(getattr(regmap[n], f) for f in _FIELDS) for n in names]
        found = cast(RegisterMap, _regmap_module.RegisterMap(regmap.role, rows, regmap.role_id))
        _readback_maps[key] = found
    return found
