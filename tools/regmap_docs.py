"""Generate the register-map pages in docs/ from the tables in protocols/roles and the shipped device profiles.

The pages are derived, never retyped: ``streetedge docs`` rewrites them and a
test fails when a committed page differs from what the table or profile says.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from gateway.profiles import shipped_profile, shipped_profiles
from protocols import regmap
from protocols.roles import ROLES, load

DOCS = Path(__file__).resolve().parent.parent / "docs" / "registers"

_TABLES = ((regmap.HOLDING, "Holding registers (function 03 read, 06/16 write)"),
           (regmap.INPUT, "Input registers (function 04 read)"),
           (regmap.COIL, "Coils (function 01 read, 05/15 write)"),
           (regmap.DISCRETE, "Discrete inputs (function 02 read)"))


def _range(reg: regmap.Register) -> str:
    if reg.type == regmap.BOOL:
        return "0 .. 1"
    return f"{reg.value(reg.minimum)} .. {reg.value(reg.maximum)}"


def _type(reg: regmap.Register) -> str:
    name = regmap.TYPE_NAMES[reg.type]
    return f"{name} low word first" if reg.width == 2 and reg.order == regmap.LOW_FIRST else name


def render(role: str) -> str:
    """The Markdown page of one role's register map, or of one shipped device profile."""
    if role not in ROLES:
        return render_profile(role)
    rmap = load(role)
    lines = [
        f"# Register map: {role}",
        "",
        f"Generated from `protocols/roles/{role}.py` by `streetedge docs`; do not edit by hand.",
        f"Role identifier {rmap.role_id}. Addresses are 0-based protocol addresses.",
        "Engineering value = raw x 10^scale. 32-bit values: high word first.",
        "",
    ]
    lines += _tables(rmap)
    flags = getattr(import_module(f"protocols.roles.{role}"), "STATUS_FLAGS", ())
    if flags:
        lines += ["## Status flags", "", "| bit mask | flag |", "|---:|---|"]
        lines += [f"| 0x{mask:04x} | `{name}` |" for mask, name in flags]
        lines.append("")
    return "\n".join(lines)


def render_profile(name: str) -> str:
    """The Markdown page of a shipped device profile: the device, its datasheet and its values."""
    profile = shipped_profile(name)
    device = profile.device
    lines = [
        f"# Device profile: {name}",
        "",
        f"Generated from `gateway/profiles/devices/{name}.toml` by `streetedge docs`; do not edit by hand.",
        "",
        f"- Device: {device.manufacturer} {device.model}" + (f": {device.description}" if device.description else ""),
        f"- Datasheet: {device.datasheet}",
        f"- Node configuration: `role = \"{name}\"`; the gateway reads at most {device.max_read} values per request.",
        "",
        "Addresses are 0-based protocol addresses. Engineering value = raw x 10^scale. 32-bit values: high word",
        "first unless the type says otherwise. Read/write values are set with the `write` command, within range.",
        "",
    ]
    lines += _tables(profile.regmap)
    return "\n".join(lines)


def _tables(rmap: Any) -> list[str]:
    lines: list[str] = []
    for table, title in _TABLES:
        regs = [r for r in rmap.registers if r.table == table]
        if not regs:
            continue
        lines += [f"## {title}", "",
                  "| address | name (SenML `n`) | type | scale | unit | access | range | meaning |",
                  "|---:|---|---|---:|---|---|---|---|"]
        for r in sorted(regs, key=lambda r: r.address):
            access = "read/write" if r.access == regmap.RW else "read"
            lines.append(
                f"| {r.address} | `{r.name}` | {_type(r)} | {r.scale} | "
                f"{r.unit or ''} | {access} | {_range(r)} | {r.doc} |"
            )
        blocks = ", ".join(f"{start}+{count}" for start, count in rmap.blocks(table))
        lines += ["", f"The gateway reads this table as: {blocks} (start+count per request).", ""]
        mirrors = getattr(rmap, "mirrors", {})
        if table == regmap.INPUT and mirrors:
            since = rmap.mirrors_since
            said = ", ".join(f"input {at} answers `{name}` (holding {rmap[name].address})"
                             for name, at in mirrors.items())
            lines += [f"Mirrors, since firmware {since >> 8}.{since & 0xFF}: {said}, the same word, so that a "
                      "serial poll reads the measurements in one request; they are not registers of their own.", ""]
    return lines


def pages() -> list[str]:
    """Every page's name: the firmware roles, then the shipped device profiles."""
    return [*ROLES, *shipped_profiles()]


def write_all(folder: Path = DOCS) -> list[Path]:
    """Rewrite every role's and shipped profile's page; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name in pages():
        path = folder / f"{name}.md"
        path.write_text(render(name))
        written.append(path)
    return written
