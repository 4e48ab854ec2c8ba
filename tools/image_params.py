"""Give the image's parameters short names shared by every function: fewer interned names in the node's RAM.

A parameter's name is interned when its module is imported (a caller could
pass it by keyword), where a local variable's is not; so on the node each
distinct parameter name costs an entry in a qstr pool in RAM. Most are never
passed by keyword. :func:`shorten_parameters` renames, function by function,
such a parameter to one of a short series (``a_``, ``b_``, ...) that every
function reuses, and every use of it in the function's body.

A parameter keeps its name where that could be seen from outside its
function, or would save nothing:

- the name is passed as a keyword anywhere (in the image or a program that
  imports its modules on a node: ``users``), or any call there unpacks a
  dictionary into keywords (``f(**d)``: then no parameter is renamed);
- the name is interned anyway: an attribute, a function, class or module
  name, an import, a string, a module global, a class attribute;
- ``self`` and ``cls``; the parameters of a function defined inside another
  function or of a lambda; a parameter that a nested scope of its function
  rebinds or declares ``global``/``nonlocal``, or that an f-string uses.

Line numbers do not move; the gateway imports the same modules from their
sources, unchanged.
"""

from __future__ import annotations

import ast
import itertools
import string

_Function = ast.FunctionDef | ast.AsyncFunctionDef
_Scope = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef | ast.comprehension


def _interned(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Names a module interns whatever its parameters are called, and the names it passes as keywords."""
    found: set[str] = set()
    keywords: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            found.add(node.attr)
        elif isinstance(node, _Function | ast.ClassDef):
            found.add(node.name)
        elif isinstance(node, ast.alias):
            found.update(node.name.split("."))
            found.add(node.asname or "")
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.update(node.module.split("."))
        elif isinstance(node, ast.keyword):
            keywords.add(node.arg or "**")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found.add(node.value)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            found.update(node.names)
    scopes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    for scope in scopes:  # module globals, class attributes
        for stmt in scope.body:
            if not isinstance(stmt, _Function | ast.ClassDef):
                found.update(n.id for n in ast.walk(stmt) if isinstance(n, ast.Name))
    return found, keywords


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    """Module-level functions and methods (of classes at any depth outside functions)."""
    found: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, _Function):
                found.append(child)
            elif isinstance(child, ast.ClassDef):
                stack.append(child)
    return found


def _rebound_inside(body: list[ast.stmt]) -> set[str]:
    """Names that a nested scope of a function binds for itself, that the function declares global or
    binds with ``except ... as``, or that an f-string uses."""
    found: set[str] = set()
    for stmt in body:
        for node in ast.walk(stmt):
            if isinstance(node, ast.Global | ast.Nonlocal):
                found.update(node.names)
            elif isinstance(node, ast.ExceptHandler) and node.name:  # `except E as name` binds a plain string
                found.add(node.name)
            elif isinstance(node, ast.JoinedStr):
                found.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name))
            elif isinstance(node, _Scope):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.arg):
                        found.add(inner.arg)
                    elif isinstance(inner, ast.Name) and not isinstance(inner.ctx, ast.Load):
                        found.add(inner.id)
                    elif isinstance(inner, _Function | ast.ClassDef):
                        found.add(inner.name)
    return found


def _series(taken: set[str]) -> list[str]:
    """Short names no module of the image uses: ``a_`` ... ``z_``, ``aa_`` ..."""
    return [name for size in (1, 2) for letters in itertools.product(string.ascii_lowercase, repeat=size)
            if (name := "".join(letters) + "_") not in taken]


def _edit(lines: list[str], line: int, col: int, old: str, new: str) -> None:
    text = lines[line - 1]
    at = len(text.encode()[:col].decode())  # ast columns count UTF-8 bytes
    assert text[at:at + len(old)] == old, (line, old)
    lines[line - 1] = text[:at] + new + text[at + len(old):]


def shorten_parameters(sources: dict[str, str], users: dict[str, str] | None = None,
                       ) -> tuple[dict[str, str], int]:
    """The image's sources (path inside the image -> text) with their parameters renamed (see the module
    doc), and how many parameters were renamed."""
    trees = {rel: ast.parse(text, rel) for rel, text in {**(users or {}), **sources}.items()}
    kept: set[str] = {"self", "cls"}
    keywords: set[str] = set()
    everywhere: set[str] = set()
    for tree in trees.values():
        interned, passed = _interned(tree)
        kept |= interned | passed
        keywords |= passed
        everywhere |= interned | {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        everywhere |= {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    if "**" in keywords:  # a dictionary unpacked into keywords: any parameter may be named by it
        return dict(sources), 0
    series = _series(everywhere)
    out: dict[str, str] = {}
    count = 0
    for rel, text in sources.items():
        lines = text.splitlines(keepends=True)
        edits: list[tuple[int, int, str, str]] = []
        for function in _functions(trees[rel]):
            a = function.args
            params = [*a.posonlyargs, *a.args, *([a.vararg] if a.vararg else []), *a.kwonlyargs,
                      *([a.kwarg] if a.kwarg else [])]
            blocked = kept | _rebound_inside(function.body)
            renames = dict(zip([p.arg for p in params if p.arg not in blocked], series, strict=False))
            for p in params:
                if p.arg in renames:
                    edits.append((p.lineno, p.col_offset, p.arg, renames[p.arg]))
            for stmt in function.body:
                edits += [(n.lineno, n.col_offset, n.id, renames[n.id]) for n in ast.walk(stmt)
                          if isinstance(n, ast.Name) and n.id in renames]
            count += len(renames)
        for line, col, old, new in sorted(edits, reverse=True):  # from the end: earlier columns stay valid
            _edit(lines, line, col, old, new)
        out[rel] = "".join(lines)
    return out, count
