"""Generate the register-map pages in docs/ from the tables in protocols/roles.

The pages are derived, never retyped: ``streetedge docs`` rewrites them and a
test fails when a committed page differs from what the table says.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from protocols import regmap
from protocols.roles import ROLES, load

DOCS = Path(__file__).resolve().parent.parent / "docs" / "registers"

_TABLES = ((regmap.HOLDING, "Holding registers (function 03 read, 06/16 write)"),
           (regmap.INPUT, "Input registers (function 04 read)"))


def _range(reg: regmap.Register) -> str:
    if reg.type == regmap.BOOL:
        return "0 .. 1"
    return f"{reg.value(reg.minimum)} .. {reg.value(reg.maximum)}"


def render(role: str) -> str:
    """The Markdown page of one role's register map."""
    rmap = load(role)
    lines = [
        f"# Register map: {role}",
        "",
        f"Generated from `protocols/roles/{role}.py` by `streetedge docs`; do not edit by hand.",
        f"Role identifier {rmap.role_id}. Addresses are 0-based protocol addresses.",
        "Engineering value = raw x 10^scale. 32-bit values: high word first.",
        "",
    ]
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
                f"| {r.address} | `{r.name}` | {regmap.TYPE_NAMES[r.type]} | {r.scale} | "
                f"{r.unit or ''} | {access} | {_range(r)} | {r.doc} |"
            )
        blocks = ", ".join(f"{start}+{count}" for start, count in rmap.blocks(table))
        lines += ["", f"The gateway reads this table as: {blocks} (start+count per request).", ""]
    flags = getattr(import_module(f"protocols.roles.{role}"), "STATUS_FLAGS", ())
    if flags:
        lines += ["## Status flags", "", "| bit mask | flag |", "|---:|---|"]
        lines += [f"| 0x{mask:04x} | `{name}` |" for mask, name in flags]
        lines.append("")
    return "\n".join(lines)


def write_all(folder: Path = DOCS) -> list[Path]:
    """Rewrite every role's page; return the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for role in ROLES:
        path = folder / f"{role}.md"
        path.write_text(render(role))
        written.append(path)
    return written
