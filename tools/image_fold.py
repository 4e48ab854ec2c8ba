"""Fold the image's named constants at build time: fewer globals and names on the node's heap.

MicroPython's compiler folds ``X = const(5)`` inside its own module, but a
public ``X`` is also stored as a module global (so that another module can
import it), and ``from m import X`` gives the importer a global of its own.
On a node every global costs a dictionary slot and every distinct name an
entry in a qstr pool in RAM (pools double in size: one name past 620 costs
7 KB on the 64-bit unix port), even with the code in ROM. The sources stay
readable (one named constant, defined once, imported where it is used); the
image does not pay for the names. Before mpy-cross compiles the image's
modules, :func:`fold_constants` rewrites their sources:

- an integer constant imported from another module of the image
  (``from protocols.modbus.pdu import FC_READ_INPUT``) is replaced by its
  value where it is used, and the import of that name is dropped (an import
  left with no names becomes ``pass``, so the module is not loaded for it);
  a name the importer also assigns or takes as a parameter is left alone;
- a number or a tuple of literals assigned once at the top level without
  ``const()`` (a small int, a float, a tuple of those and strings: the
  compiler folds those too, one object per distinct value) is wrapped in
  ``const()``;
- a public constant (any ``const()`` value) that no module of the image still
  imports or reaches as an attribute (``module.X``) or by its name as a
  string (``getattr(module, "X")``) is renamed ``_X``: the compiler then
  keeps it out of the module's globals.

Line numbers do not move (tracebacks point at the sources). A constant whose
value is not a literal or an expression of other constants is left as it is.
The gateway imports the same modules from their sources, unchanged.
"""

from __future__ import annotations

import ast
from typing import Any

_SMALL_INT = 1 << 30  # an ESP32's small ints: a larger constant would be an object of its own
_Edit = tuple[int, int, int, int, str]  # start line, start column, end line, end column, new text


def _module_name(rel: str) -> str:
    """``firmware/node.py`` -> ``firmware.node``; ``board/__init__.py`` -> ``board``."""
    parts = rel.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _value(expr: ast.expr, known: dict[str, Any]) -> Any:
    """The value of a constant's expression: a literal, or arithmetic on other known constants; else raise."""
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and node.id not in known:
            raise ValueError(node.id)
        if not isinstance(node, ast.Name | ast.Constant | ast.BinOp | ast.UnaryOp | ast.Tuple | ast.Load
                          | ast.operator | ast.unaryop):
            raise ValueError(type(node).__name__)
    return eval(compile(ast.Expression(expr), "<const>", "eval"), {"__builtins__": {}}, dict(known))


def _own_constants(tree: ast.Module) -> dict[str, Any]:
    """Public ``NAME = const(value)`` statements at the top level of a module: name -> value."""
    found: dict[str, Any] = {}
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name)
                and stmt.value.func.id == "const" and len(stmt.value.args) == 1):
            name = stmt.targets[0].id
            if name.startswith("_"):
                continue
            try:
                found[name] = _value(stmt.value.args[0], found)
            except (ValueError, TypeError, ArithmeticError, SyntaxError):
                continue
    return found


def _constant_literal(value: Any) -> bool:
    """True for what ``const()`` takes and folds: a small int, a float, a string, or a tuple of those."""
    if type(value) is tuple:
        return all(_constant_literal(v) for v in value)
    return type(value) in (float, str, bytes) or (type(value) is int and -_SMALL_INT <= value < _SMALL_INT)


def _plain_literals(tree: ast.Module) -> dict[str, ast.expr]:
    """Top-level ``NAME = <literal>`` without ``const()``, a number or a tuple (see _constant_literal): name ->
    literal. A plain string stays as it is: the compiler already keeps its characters in the image."""
    found: dict[str, ast.expr] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                value = ast.literal_eval(stmt.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            if type(value) is not str and type(value) is not bytes and _constant_literal(value):
                found[stmt.targets[0].id] = stmt.value
    return found


def _bound(tree: ast.Module) -> dict[str, int]:
    """How many times each name is bound in a module (assignments, parameters, imports, defs)."""
    counts: dict[str, int] = {}

    def bind(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bind(node.id)
        elif isinstance(node, ast.arg):
            bind(node.arg)
        elif isinstance(node, ast.alias):
            bind(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bind(node.name)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            for name in node.names:
                bind(name)
    return counts


def _imported_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _apply(text: str, edits: list[_Edit]) -> str:
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def offset(line: int, col: int) -> int:  # ast columns count UTF-8 bytes
        return starts[line - 1] + len(lines[line - 1].encode()[:col].decode())

    for l0, c0, l1, c1, new in sorted(edits, reverse=True):
        text = text[: offset(l0, c0)] + new + text[offset(l1, c1):]
    return text


def fold_constants(sources: dict[str, str]) -> dict[str, str]:
    """The image's sources (path inside the image -> text) with their constants folded (see the module doc).

    Only the modules given are rewritten and only names defined in them are
    folded; a module outside (MicroPython's own) is never assumed constant.
    """
    trees = {rel: ast.parse(text, rel) for rel, text in sources.items()}
    names = {rel: _module_name(rel) for rel in sources}
    bound = {rel: _bound(tree) for rel, tree in trees.items()}
    # A plain number or tuple global assigned once is a constant too: wrapped in const() it leaves the globals.
    plain = {rel: {n: v for n, v in _plain_literals(tree).items() if bound[rel].get(n) == 1}
             for rel, tree in trees.items()}
    consts = {names[rel]: _own_constants(tree) for rel, tree in trees.items()}
    for rel in trees:
        for n, literal in plain[rel].items():
            if not n.startswith("_"):
                consts[names[rel]].setdefault(n, ast.literal_eval(literal))
    own_names = {rel: set(consts[names[rel]]) for rel in trees}
    imports = {rel: _from_imports(tree, names[rel], rel.endswith("__init__.py")) for rel, tree in trees.items()}
    aliases = {rel: _module_aliases(imports[rel], bound[rel], consts) for rel in trees}

    # What each module's names hold when they are integer constants, re-exports included.
    changed = True
    while changed:
        changed = False
        for rel in trees:
            for source, name, local, _ in imports[rel]:
                value = consts.get(source, {}).get(name)
                if type(value) is int and bound[rel].get(local) == 1 and local not in consts[names[rel]]:
                    consts[names[rel]][local] = value
                    changed = True

    def folded_attribute(rel: str, node: ast.AST) -> int | None:
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load) and isinstance(node.value, ast.Name)
                and node.value.id in aliases[rel]):
            value = consts[aliases[rel][node.value.id]].get(node.attr)
            if type(value) is int:
                return value
        return None

    pinned: set[str] = set()  # reached by attribute or by string: must stay a global
    star = any(local == "*" for rel in trees for _, _, local, _ in imports[rel])
    if star:  # ``from m import *`` takes every global: fold nothing
        pinned.update(n for values in consts.values() for n in values)
    for rel, tree in trees.items():
        exported = _exported(tree)
        for node in ast.walk(tree):
            if id(node) in exported:
                continue  # ``__all__`` names what the sources export; nothing on a node reads it
            if isinstance(node, ast.Attribute) and folded_attribute(rel, node) is None:
                pinned.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                pinned.add(node.value)

    inline: dict[str, dict[str, int]] = {rel: {} for rel in trees}  # importer -> local name -> value
    kept: set[tuple[str, str]] = set()  # (module, name) still imported somewhere
    for rel in trees:
        for source, name, local, _ in imports[rel]:
            value = consts.get(source, {}).get(name)
            if type(value) is int and bound[rel].get(local) == 1 and local not in pinned:
                inline[rel][local] = value
            else:
                kept.add((source, name))

    out: dict[str, str] = {}
    for rel, tree in trees.items():
        edits: list[_Edit] = []
        if not star:  # nothing reads ``__all__`` on a node: its list and names would only take RAM
            edits += [_pos(stmt, "pass" + "\n" * (stmt.end_lineno - stmt.lineno)) for stmt in tree.body
                      if isinstance(stmt, ast.Assign) and stmt.end_lineno is not None
                      and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets)]
        wrap = {id(v) for n, v in plain[rel].items() if n not in pinned}
        edits += [_pos(v, f"const({ast.get_source_segment(sources[rel], v)})") for v in plain[rel].values()
                  if id(v) in wrap]
        own = {n for n in own_names[rel]
               if n not in pinned and (names[rel], n) not in kept and bound[rel].get(n) == 1
               and "_" + n not in bound[rel]}
        here = inline[rel]
        for node in ast.walk(tree):
            attribute = folded_attribute(rel, node)
            if attribute is not None:
                edits.append(_pos(node, repr(attribute)))  # type: ignore[arg-type]
            elif isinstance(node, ast.Name) and node.id in here and isinstance(node.ctx, ast.Load):
                edits.append(_pos(node, repr(here[node.id])))
            elif isinstance(node, ast.Name) and node.id in own:
                edits.append(_pos(node, "_" + node.id))
            elif isinstance(node, ast.ImportFrom) and any((a.asname or a.name) in here for a in node.names):
                keep = [a for a in node.names if (a.asname or a.name) not in here]
                if keep:
                    listed = ", ".join(a.name + (" as " + a.asname if a.asname else "") for a in keep)
                    new = f"from {'.' * node.level}{node.module or ''} import {listed}"
                else:
                    new = "pass"
                assert node.end_lineno is not None
                edits.append(_pos(node, new + "\n" * (node.end_lineno - node.lineno)))
        out[rel] = _apply(sources[rel], edits) if edits else sources[rel]
    return out


def _from_imports(tree: ast.Module, module: str, is_package: bool) -> list[tuple[str, str, str, ast.ImportFrom]]:
    """Every ``from m import name [as local]`` of a module (any depth): (m, name, local, statement)."""
    return [(_imported_from(node, module, is_package), a.name, a.asname or a.name, node)
            for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names]


def _module_aliases(imports: list[tuple[str, str, str, ast.ImportFrom]], bound: dict[str, int],
                    consts: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Local names bound once to a module of the image (``from firmware.roles import lamp as L``): name -> module."""
    found: dict[str, str] = {}
    for source, name, local, _ in imports:
        module = f"{source}.{name}"
        if module in consts and bound.get(local) == 1:
            found[local] = module
    return found


def _exported(tree: ast.Module) -> set[int]:
    """ids of the string nodes of a module's ``__all__``."""
    return {id(n) for stmt in tree.body if isinstance(stmt, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets)
            for n in ast.walk(stmt.value)}


def _pos(node: ast.expr | ast.stmt, new: str) -> _Edit:
    assert node.end_lineno is not None and node.end_col_offset is not None
    return (node.lineno, node.col_offset, node.end_lineno, node.end_col_offset, new)
