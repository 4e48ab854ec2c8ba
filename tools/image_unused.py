"""Leave out of the image the functions and classes nothing on the node uses: fewer objects and names in RAM.

The node shares ``protocols/`` with the gateway, and its modules carry the
whole of what each contract offers: error kinds the node never raises, the
almanac's functions a lamp never calls, the status decoder of an update. On
the node each top-level function or class costs, even with its code in ROM,
a function or class object and a dictionary slot in RAM and its name in a
qstr pool. :func:`drop_unused` replaces, in the modules under ``firmware/``
and ``protocols/``, each top-level ``def`` or ``class`` that no module of the
image uses with ``pass`` (and blank lines: line numbers stay).

Used means named anywhere, in any module of the image (or a program that
imports the image's modules on a node: ``users``): as a name, an attribute, an
import, or a word of any string constant (the board's table of parts names its
factories in a string; docstrings are prose and name nothing); a definition
that only definitions dropped before named goes too. Dunder names stay (the
runtime calls them). Modules outside ``firmware/`` and ``protocols/`` (the
board, whose parts are named in its ``board.json``) are never trimmed. The gateway imports the same modules from
their sources, unchanged.
"""

from __future__ import annotations

import ast
import re

_TRIMMED = ("firmware/", "protocols/")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef


def _named(node: ast.AST, skip: set[int]) -> set[str]:
    """Every name used under ``node``, outside the subtrees whose ids are in ``skip``."""
    found: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in skip:
            continue
        if isinstance(n, ast.Name):
            found.add(n.id)
        elif isinstance(n, ast.Attribute):
            found.add(n.attr)
        elif isinstance(n, ast.alias):
            found.update(n.name.split("."))
            if n.asname:
                found.add(n.asname)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            found.update(_WORD.findall(n.value))
        stack.extend(ast.iter_child_nodes(n))
    return found


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstrings' nodes (prose: the words in them name nothing the node looks up)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | _Definition) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                found.add(id(first))
    return found


def _candidates(rel: str, tree: ast.Module) -> list[_Definition]:
    if not rel.startswith(_TRIMMED):
        return []
    return [stmt for stmt in tree.body if isinstance(stmt, _Definition) and not stmt.name.startswith("__")]


def drop_unused(sources: dict[str, str], users: dict[str, str] | None = None,
                ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The image's sources (path inside the image -> text) without their unused top-level definitions (see
    the module doc), and per module the names dropped."""
    trees = {rel: ast.parse(text, rel) for rel, text in {**(users or {}), **sources}.items()}
    candidates = {rel: _candidates(rel, trees[rel]) for rel in sources}
    prose = set().union(*(_docstrings(tree) for tree in trees.values()))
    dropped: dict[str, list[_Definition]] = {rel: [] for rel in sources}
    while True:  # a definition only a dropped one named is unused in turn
        skip = prose | {id(d) for ds in dropped.values() for d in ds}
        used = set().union(*(_named(tree, skip) for tree in trees.values()))
        more = {rel: [d for d in ds if d.name not in used and id(d) not in skip] for rel, ds in candidates.items()}
        if not any(more.values()):
            break
        for rel, ds in more.items():
            dropped[rel] += ds
    out: dict[str, str] = {}
    for rel, text in sources.items():
        lines = text.splitlines(keepends=True)
        for d in sorted(dropped[rel], key=lambda d: d.lineno, reverse=True):
            first = min([d.lineno] + [dec.lineno for dec in d.decorator_list])
            assert d.end_lineno is not None
            lines[first - 1:d.end_lineno] = ["pass\n"] + ["\n"] * (d.end_lineno - first)
        out[rel] = "".join(lines)
    return out, {rel: [d.name for d in ds] for rel, ds in dropped.items() if ds}
