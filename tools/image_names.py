"""Give the image's private names short names shared by every module: fewer interned names in the node's RAM.

Each distinct name a compiled module uses (a function, class, global,
attribute or parameter name) is interned when the module is imported, and
stays interned: on the node every one of them is an entry in a qstr pool in
RAM, even with the code in ROM (pools double in size as names are added:
one name past 620 costs 7 KB on the 64-bit unix port). Names private to one
module (``self._dirty``, ``_read_json``) are mostly used by that module
alone, yet each costs the node an entry of its own. :func:`shorten_names`
renames, module by module, such a name to one of a short series (``_a``,
``_b``, ...) that every module reuses: a node pays for the longest series
once, not for every private name of every module.

A name is renamed in a module only where the rename cannot be seen from
outside it:

- it starts with one underscore (not a dunder) and is not a folded
  ``_NAME = const(...)`` (those never reach the node);
- no module (of the image, or a program that imports its modules on a node:
  ``users``) reaches it as an attribute of anything but ``self``
  (``other._x``, ``module._x``), passes it as a keyword argument, imports it,
  or has it as a string (``getattr(obj, "_x")``);
- where the module has it as an attribute (of ``self``), no class of the
  module inherits from another module's class nor is inherited from by one:
  so two modules' series never meet on one object.

A module's own functions, globals, locals and the attributes its methods set
on their ``self`` are then its own business, whatever other modules call
theirs.
Every use of a renamed name in its module changes, locals and parameters
included, so the module means what it meant. Line numbers do not move
(tracebacks point at the source lines; a private function there shows its
short name: :func:`shorten_names` returns the renames). The gateway imports
the same modules from their sources, unchanged.
"""

from __future__ import annotations

import ast
import io
import itertools
import keyword
import string
import tokenize


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and len(name) > 1


def _uses(tree: ast.Module) -> tuple[set[str], set[str], set[str], set[str]]:
    """A module's identifiers, its string constants, its imported names (modules and objects), and the names it
    reaches in another namespace than its own: attributes of something other than ``self``, keywords."""
    names: set[str] = set()
    strings: set[str] = set()
    modules: set[str] = set()
    foreign: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):  # an f-string is one token: the names inside it stay as they are
            strings.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
            if not (isinstance(node.value, ast.Name) and node.value.id == "self"):
                foreign.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.keyword) and node.arg is not None:  # a keyword reaches another function's
            names.add(node.arg)
            foreign.add(node.arg)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
        elif isinstance(node, ast.alias):
            modules.update(node.name.split("."))
            names.add(node.asname or node.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.update(node.module.split("."))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            strings.add(node.value)
    return names, strings, modules, foreign


def _attributes(tree: ast.Module) -> set[str]:
    """Names a module uses as attributes: ``x.name``, and what its class bodies define (methods, class
    attributes), which an instance of a subclass elsewhere reaches as ``self.name``."""
    found = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    for cls in ast.walk(tree):
        if isinstance(cls, ast.ClassDef):
            for stmt in cls.body:
                if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    found.add(stmt.name)
                elif isinstance(stmt, ast.Assign | ast.AnnAssign):
                    targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                    found.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
    return found


def _constants(tree: ast.Module) -> set[str]:
    """Top-level ``_NAME = const(...)``: the compiler folds those, their names never reach the node."""
    return {stmt.targets[0].id for stmt in tree.body
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id == "const"}


def _inheritance(trees: dict[str, ast.Module]) -> set[str]:
    """Modules with a class whose base is another module's class, or whose class another module inherits from."""
    defined = {rel: {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)} for rel, tree in trees.items()}
    tied: set[str] = set()
    for rel, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            for base in node.bases:
                name = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
                if name in defined[rel]:
                    continue
                owners = [other for other, classes in defined.items() if name in classes]
                if owners:
                    tied.add(rel)
                    tied.update(owners)
    return tied


def _series(taken: set[str]) -> list[str]:
    """Short private names no module of the image uses: ``_a`` ... ``_z``, ``_aa`` ..."""
    found = []
    for size in (1, 2):
        for letters in itertools.product(string.ascii_lowercase, repeat=size):
            name = "_" + "".join(letters)
            if name not in taken and not keyword.iskeyword(name):
                found.append(name)
    return found


def _rename(text: str, renames: dict[str, str]) -> str:
    """``text`` with every name token in ``renames`` replaced (strings and comments untouched)."""
    lines = text.splitlines(keepends=True)
    edits = [tok for tok in tokenize.generate_tokens(io.StringIO(text).readline)
             if tok.type == tokenize.NAME and tok.string in renames]
    for tok in reversed(edits):  # tokens come in order: replace from the end, columns stay valid
        (row, col), (_, end) = tok.start, tok.end
        line = lines[row - 1]
        lines[row - 1] = line[:col] + renames[tok.string] + line[end:]
    return "".join(lines)


def shorten_names(sources: dict[str, str], users: dict[str, str] | None = None,
                  ) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The image's sources (path inside the image -> text) with private names shortened (see the module doc),
    and per module the renames made (old name -> new name).

    ``users``: modules outside the image that import its modules on a node (path -> text), such as a
    host that runs many nodes in one process: they count as other modules, and are not rewritten.
    """
    outside = users or {}
    trees = {rel: ast.parse(text, rel) for rel, text in {**outside, **sources}.items()}
    uses = {rel: _uses(tree) for rel, tree in trees.items()}
    tied = _inheritance(trees)
    everywhere: set[str] = set()
    pinned: set[str] = set()
    for names, strings, modules, foreign in uses.values():
        everywhere |= names | strings | modules
        pinned |= strings | modules | foreign
    series = _series(everywhere)
    out: dict[str, str] = {}
    renamed: dict[str, dict[str, str]] = {}
    for rel, text in sources.items():
        names = uses[rel][0]
        attributes = _attributes(trees[rel])
        folded = _constants(trees[rel])
        mine = sorted(n for n in names if _private(n) and n not in pinned and n not in folded
                      and (n not in attributes or rel not in tied))
        renames = dict(zip(mine, series, strict=False))  # a module with more names than the series keeps the rest
        out[rel] = _rename(text, renames) if renames else text
        if renames:
            renamed[rel] = renames
    return out, renamed
