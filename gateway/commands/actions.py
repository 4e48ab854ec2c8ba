"""What each command action writes to a node, and which read-back confirms it.

An action becomes one :class:`~gateway.commands.node_plan.NodePlan` per targeted
node. Which registers an action uses comes from the node's register map
(``protocols/roles``): a node whose role lacks them cannot take the action
(``bad_parameters``, naming the register). Values are checked against the
map's bounds, and the lamp's schedule against the node's own rules
(:mod:`protocols.programs`), before anything is written.

==================  ==========================================  ==============================================
action              writes                                      done when the read-back shows
==================  ==========================================  ==============================================
``dim``             ``dim_level``                               that level
``switch``          ``relay``                                   that relay state
``override``        ``override_level``, ``override_minutes``    both (minutes may have ticked once), the lamp
                                                                at that level and not driven by the gateway
``clear_override``  ``override_minutes`` = 0                    0 minutes left
``set_schedule``    program window (one write per program),     each program, loaded into the window, equal to
                    calendar block                              what was written; the calendar block equal
``set_config``      the settings named                          each setting as written
``write``           the registers and coils named (a device     each as written
                    profile's writable ones, within range)
``set_unit``        ``unit`` + ``command`` = apply (one write)  ``unit`` read at the new unit
``time_sync``       ``clock`` = the gateway's time as it goes   a clock within :data:`CLOCK_TOLERANCE` of the
                    out                                         gateway's, ``node_status`` not unsynced
``reboot``          ``command`` = reboot                        ``boots`` grown and an ``uptime`` younger than
                                                                the command (read again until ``within``
                                                                seconds); then the clock is set again
``refresh``         nothing (every register is read, and read   the read succeeds
                    again and published by the next poll)
==================  ==========================================  ==============================================
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from gateway.commands import lamp_schedule as sched
from gateway.commands.node_plan import NodePlan, Read, Readback, readback_map, reads_for, runs, word_map, word_name
from gateway.commands.parse import BAD_PARAMETERS, Command, CommandRejected
from gateway.contracts import BOOL, COIL, FIRMWARE_ROLES, HOLDING, RW, TABLES, Number, Register, RegisterMap
from gateway.contracts import common as _common
from gateway.contracts import lamp as _lamp
from gateway.contracts import programs as rules

if TYPE_CHECKING:
    from gateway.service.config import NodeConfig

CLOCK_TOLERANCE = 3.0
"""Seconds a node's clock may differ from the gateway's at read-back after a time sync."""
OVERRIDE_SETTLE = 5.0
"""Seconds an override's read-back is tried again: the node publishes who drives the lamp once a sample."""
UNIT_SETTLE = 3.0
"""Seconds the new unit is asked for after a unit change."""
REBOOT_SLACK = 5.0
"""Seconds an uptime may exceed the time since the reboot command (whole seconds, sampling)."""

CMD_REBOOT: int = _common.CMD_REBOOT
CMD_APPLY_UNIT: int = _common.CMD_APPLY_UNIT
NODE_CLOCK_UNSYNCED: int = _common.NODE_CLOCK_UNSYNCED
CONTROL_GATEWAY: int = _lamp.CONTROL_GATEWAY

NOT_SETTINGS = {
    "dim_level": "dim", "relay": "switch", "override_level": "override", "override_minutes": "override",
    "clock": "time_sync", "unit": "set_unit", "command": "reboot",
    "event_from": "none (the gateway's event reader moves it)",
}
"""Writable registers that ``set_config`` leaves to their own action."""
AFTERWARDS = {
    "set_unit": "the gateway still polls the old unit: change the node's unit in the gateway configuration "
                "and reload it (until then the node reads as offline)",
}
"""What the operator must do after a done command of these actions."""


class Context:
    """What planning may know beyond the command: the node's last polled values and its bus neighbours.

    Attributes:
        known: the node's last engineering values by register name (empty if never polled).
        bus_nodes: the configured nodes on the node's bus.
    """

    __slots__ = ("bus_nodes", "known")

    def __init__(self, known: Mapping[str, Number] | None = None, bus_nodes: Sequence[NodeConfig] = ()) -> None:
        self.known = known or {}
        self.bus_nodes = bus_nodes


def settings(regmap: RegisterMap) -> list[str]:
    """The registers ``set_config`` may write on this role: writable holding registers with no action of their own."""
    return [r.name for r in regmap.registers if r.table == HOLDING and r.access == RW and r.name not in NOT_SETTINGS]


def target_problem(command: Command) -> str | None:
    """A rule about the target as a whole, or None (a unit change is for one node only)."""
    if command.action == "set_unit" and command.target.kind != "node":
        return "set_unit takes one node as its target, never a group, bus or all (nodes sharing a unit collide)"
    return None


def plan_node(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    """The plan of ``command`` for one node; CommandRejected(bad_parameters) if the node cannot do it."""
    planner = _PLANNERS.get(command.action)
    if planner is None:
        raise CommandRejected(BAD_PARAMETERS, f"{command.action} is not a node action", command_id=command.id)
    try:
        return planner(command, node, regmap, now, ctx)
    except ValueError as exc:
        raise CommandRejected(BAD_PARAMETERS, f"{node.id}: {exc}", command_id=command.id) from None


def _need(command: Command, node: NodeConfig, regmap: RegisterMap, names: Sequence[str]) -> list[Register]:
    for name in names:
        if name not in regmap:
            raise ValueError(f"({node.role}) cannot {command.action}: its role has no register {name!r}")
    return sorted((regmap[n] for n in names), key=lambda r: r.address)


def _writes(regs: list[Register], values: Mapping[str, Number]) -> tuple[list[tuple[int, tuple[int, ...]]],
                                                                          dict[str, Number]]:
    raws = {reg.name: reg.to_raw(values[reg.name]) for reg in regs}
    return runs(regs, raws), raws


def _equal(regs: list[Register], raws: Mapping[str, Number]) -> Callable[[Readback], str | None]:
    def check(rb: Readback) -> str | None:
        for reg in regs:
            got = rb.values.get(reg.name)
            if got != raws[reg.name]:
                shown = "nothing" if got is None else reg.value(got)
                return f"read back {reg.name} {shown}, expected {reg.value(raws[reg.name])}"
        return None

    return check


def _plan_values(command: Command, node: NodeConfig, regmap: RegisterMap, values: dict[str, Number]) -> NodePlan:
    regs = _need(command, node, regmap, list(values))
    writes, raws = _writes(regs, values)
    return NodePlan(node, writes, reads_for(regmap, list(values)), _equal(regs, raws))


def _dim(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    return _plan_values(command, node, regmap, {"dim_level": command.params["level"]})


def _switch(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    return _plan_values(command, node, regmap, {"relay": bool(command.params["on"])})


def _clear_override(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    return _plan_values(command, node, regmap, {"override_minutes": 0})


def _override(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    level, minutes = command.params["level"], command.params["minutes"]
    names = ["override_level", "override_minutes", "dim_level", "relay", "control"]
    _need(command, node, regmap, names)
    writes, _ = _writes([regmap["override_level"], regmap["override_minutes"]],
                        {"override_level": level, "override_minutes": minutes})

    def check(rb: Readback) -> str | None:
        v = rb.values
        if v.get("override_level") != level:
            return f"read back override_level {v.get('override_level')}, expected {level}"
        left = v.get("override_minutes")
        if left is None or not minutes - 1 <= left <= minutes:
            return f"read back override_minutes {left}, expected {minutes}"
        if v.get("control") == CONTROL_GATEWAY:
            return ("override stored, but the gateway drives this lamp (control 0): an override acts on the "
                    "lamp's program, which rules in mode 1 (set_config mode=1) or after autonomy_after "
                    "seconds without requests")
        if v.get("dim_level") != level or v.get("relay") != (1 if level > 0 else 0):
            return f"override stored, but the lamp is at {v.get('dim_level')}% (relay {v.get('relay')})"
        return None

    return NodePlan(node, writes, reads_for(regmap, names), check, settle=OVERRIDE_SETTLE)


def _time_sync(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    return time_sync_plan(node, regmap, now, command.action)


def time_sync_plan(node: NodeConfig, regmap: RegisterMap, now: float, action: str = "time_sync") -> NodePlan:
    """Write the gateway's clock as the write goes out; confirmed by the clock and the synced flag."""
    if "clock" not in regmap:
        raise ValueError(f"({node.role}) cannot {action}: its role has no register 'clock'")
    clock = regmap["clock"]
    try:
        clock.to_raw(int(now))
    except ValueError:
        raise ValueError(f"the gateway's own clock ({now:.0f}) is outside the node's clock range") from None

    def writer(t: float) -> list[tuple[int, tuple[int, ...]]]:
        return [(clock.address, clock.words(clock.to_raw(int(t))))]

    names = ["clock"] + (["node_status"] if "node_status" in regmap else [])

    def check(rb: Readback) -> str | None:
        got = rb.values.get("clock")
        if got is None:
            return "read back no clock"
        if abs(float(got) - rb.now) > CLOCK_TOLERANCE:
            return f"node clock {int(got)} is {float(got) - rb.now:+.0f} s from the gateway's"
        status = rb.values.get("node_status")
        if status is not None and int(status) & NODE_CLOCK_UNSYNCED:
            return "clock set, but node_status still says unsynced"
        return None

    return NodePlan(node, writer, reads_for(regmap, names), check, key=("clock",))


def _set_config(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    allowed = settings(regmap)
    for name in command.params:
        if name in NOT_SETTINGS and name in regmap:
            raise ValueError(f"{name!r} is not a setting: its action is {NOT_SETTINGS[name]}")
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"({node.role}) has no setting {name[:40]!r}{hint} (settings: {', '.join(allowed)})")
    values = dict(command.params)
    if "photo_off" in regmap and ("photo_on" in values or "photo_off" in values):
        on, off = values.get("photo_on", ctx.known.get("photo_on")), values.get("photo_off", ctx.known.get("photo_off"))
        if on is not None and off:  # photo_off 0: no photocell, any photo_on
            rules.validate_photo({"on": on, "off": off})
    return _plan_values(command, node, regmap, values)


def _write(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    """Any writable register or coil of the node's map, within its range; coils go out as functions 05/15."""
    if regmap.role in FIRMWARE_ROLES:  # a node's unit, clock or command register has an action with its checks
        raise ValueError(f"({node.role}) is a streetedge node: write is for device profiles; use its own actions")
    writable = [r.name for r in regmap.registers if r.access == RW]
    for name in command.params:
        if name not in writable:
            close = difflib.get_close_matches(name, writable, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            known = ", ".join(writable) or "none"
            raise ValueError(f"({node.role}) has no writable register {name[:40]!r}{hint} (writable: {known})")
    values = dict(command.params)
    regs = _need(command, node, regmap, list(values))
    for reg in regs:
        if isinstance(values[reg.name], bool) != (reg.type == BOOL):
            kind = "true or false" if reg.type == BOOL else "a number"
            raise ValueError(f"{reg.name} takes {kind}, got {values[reg.name]!r}")
    raws = {reg.name: reg.to_raw(values[reg.name]) for reg in regs}
    holding = [r for r in regs if r.table == HOLDING]
    coils = [r for r in regs if r.table == COIL]
    return NodePlan(node, runs(holding, raws), reads_for(regmap, list(values)), _equal(regs, raws),
                    coils=runs(coils, raws))


def _set_unit(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    new = command.params["unit"]
    if new == node.unit:
        raise ValueError(f"unit {new} is its unit already")
    for other in ctx.bus_nodes:
        if other.unit == new and other.id != node.id:
            raise ValueError(f"unit {new} belongs to {other.id} on bus {node.bus}")
    regs = _need(command, node, regmap, ["unit", "command"])
    writes, _ = _writes(regs, {"unit": new, "command": CMD_APPLY_UNIT})
    if len(writes) != 1:
        raise ValueError("the role's unit and command registers are not neighbours: a unit change needs one write")
    read = Read(readback_map(regmap, ("unit",)), HOLDING, unit=new)

    def check(rb: Readback) -> str | None:
        got = rb.values.get("unit")
        return None if got == new else f"unit {new} reads back {got}"

    return NodePlan(node, writes, [read], check, settle=UNIT_SETTLE, broadcast=False)


def _reboot(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    _need(command, node, regmap, ["command", "boots", "uptime"])
    writes, _ = _writes([regmap["command"]], {"command": CMD_REBOOT})

    def check(rb: Readback) -> str | None:
        boots, before, uptime = rb.values.get("boots"), rb.before.get("boots"), rb.values.get("uptime")
        if boots is None or uptime is None or before is None:
            return "no answer after the reboot"
        if boots <= before:
            return f"no reboot seen: boots still {boots}, uptime {uptime} s"
        if uptime > rb.since_write + REBOOT_SLACK:
            return f"boots grew to {boots}, but uptime {uptime} s is older than the reboot command"
        return None

    def follow(t: float) -> NodePlan:  # the node's clock does not survive a reset
        return time_sync_plan(node, regmap, t, "reboot")

    names = ["boots", "uptime"] + (["boot_reason"] if "boot_reason" in regmap else [])
    return NodePlan(
        node, writes, reads_for(regmap, names), check, before=reads_for(regmap, ["boots"]),
        settle=float(command.params["within"]), every=1.0, follow=follow if "clock" in regmap else None,
    )


def _refresh(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    # Settings and identity are read only at start, when settings_changes moves or after a command: an
    # operator who doubts a value asks for them all; the next poll reads (and publishes) every class too.
    reads = [Read(regmap, table) for table in TABLES if regmap.blocks(table)]
    return NodePlan(node, [], reads, lambda rb: None, broadcast=False, repoll=True)


def _set_schedule(command: Command, node: NodeConfig, regmap: RegisterMap, now: float, ctx: Context) -> NodePlan:
    params = command.params
    if "programs" not in regmap:
        raise ValueError(f"({node.role}) keeps no programs or calendar")
    needed = sched.needed_programs(params)
    if needed:
        mask = ctx.known.get("programs")
        if mask is None:
            raise ValueError(
                f"the gateway has not yet read which programs the node stores; include program(s) "
                f"{', '.join(map(str, needed))} in 'programs'"
            )
        missing = [pid for pid in needed if not int(mask) >> pid & 1]
        if missing:
            raise ValueError(
                f"the calendar names program {missing[0]}, which the node does not store (programs register "
                f"{int(mask):#06x}); include it in 'programs'"
            )
    reads: list[Read] = []
    expected: list[tuple[str, tuple[int, ...]]] = []
    for key, points in params.get("programs", {}).items():
        pid = int(key)
        start, words = sched.program_run(pid, () if points is None else tuple(tuple(p) for p in points))
        reads.append(Read(word_map(start, len(words)), HOLDING, select=[sched.select_run(pid)]))
        expected.append((f"program {pid}", words))
    if "calendar" in params:
        words = sched.calendar_words(params["calendar"])
        reads.append(Read(word_map(sched.CALENDAR_START, len(words)), HOLDING))
        expected.append(("calendar", words))

    def check(rb: Readback) -> str | None:
        for (what, words), read, found in zip(expected, reads, rb.reads, strict=True):
            start = read.regmap.registers[0].address
            got = tuple(int(found.get(word_name(start + k), -1)) for k in range(len(words)))
            if got != words:
                if what != "calendar" and len(words) == 2:
                    return f"{what} is still stored ({got[1]} points)"
                if what != "calendar" and got[1] == 0:
                    return f"{what} is not stored"
                return f"{what} reads back other words than written"
        return None

    return NodePlan(node, sched.writes(params), reads, check)


_PLANNERS: dict[str, Callable[[Command, NodeConfig, RegisterMap, float, Context], NodePlan]] = {
    "dim": _dim, "switch": _switch, "override": _override, "clear_override": _clear_override,
    "set_schedule": _set_schedule, "set_config": _set_config, "set_unit": _set_unit,
    "time_sync": _time_sync, "reboot": _reboot, "write": _write, "refresh": _refresh,
}
