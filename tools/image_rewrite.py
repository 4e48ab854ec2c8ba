"""The build steps that rewrite an image's compiled sources, in order, and what they depend on.

:func:`rewritten` runs :mod:`tools.image_fold` (constants folded), :mod:`tools.image_unused` (unused
top-level definitions out), :mod:`tools.image_names` (private names shortened) and
:mod:`tools.image_params` (parameters shortened) over an image's sources; :mod:`tools.image` compiles
the result. The programs in :data:`IMAGE_USERS` import image modules on the unix port, so the names
they reach are kept.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

from tools.image_fold import fold_constants
from tools.image_names import shorten_names
from tools.image_params import shorten_parameters
from tools.image_unused import drop_unused

REWRITE_SOURCES = tuple(Path(__file__).with_name(f"image_{step}.py")
                        for step in ("fold", "unused", "names", "params", "rewrite"))
"""Part of what an image is built from: the build steps that rewrite its sources."""
IMAGE_USERS = Path(__file__).parent / "sim" / "micropython"
"""Programs that import an image's modules on the unix port (many nodes in one process): their names count."""


def is_empty(text: str) -> bool:
    """True for a module with nothing to run: no statements but a docstring or ``pass``."""
    return all(isinstance(stmt, ast.Pass) or (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
               for stmt in ast.parse(text).body)


_REWRITTEN: dict[str, tuple[dict[str, str], dict[str, dict[str, str]]]] = {}  # a test session rebuilds often


def rewritten(sources: dict[str, str]) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """The build steps that rewrite the compiled modules' sources (see tools/image.py's module doc), in order; and per
    module the private names shortened (short name -> name in the source), to read a node's tracebacks."""
    users = {f"<users>/{p.name}": p.read_text() for p in sorted(IMAGE_USERS.glob("*.py"))}
    key = hashlib.sha256(json.dumps([sorted(sources.items()), sorted(users.items())]).encode()).hexdigest()
    if key not in _REWRITTEN:
        if len(_REWRITTEN) >= 8:
            del _REWRITTEN[next(iter(_REWRITTEN))]
        steps = drop_unused(fold_constants(sources), users)[0]
        short, renames = shorten_names(steps, users)
        names = {rel: {new: old for old, new in sorted(done.items())} for rel, done in sorted(renames.items()) if done}
        _REWRITTEN[key] = shorten_parameters(short, users)[0], names
    rewritten, names = _REWRITTEN[key]
    return dict(rewritten), names
