"""Unused definitions left out of the image (tools.image_unused): fewer objects on the node, same behaviour."""

from __future__ import annotations

from pathlib import Path

from tests.tools.mpy_kit import run_compiled
from tools.image_unused import drop_unused

_ERRORS = '''\
"""Errors: a FrameError is not a DecodeError (names in a docstring name nothing)."""


class ProtocolError(ValueError):
    """Root."""


class FrameError(ProtocolError):
    """Bad frame."""


class DecodeError(ProtocolError):
    """Bad payload."""


class Unreached(ProtocolError):
    """Only an unused function names it."""


def _unused_helper():
    return Unreached()


def by_name():
    return 1


def __getattr__(name):
    raise AttributeError(name)
'''
_USER = '''\
from protocols.errors import DecodeError


def check(data):
    if not data:
        raise DecodeError("empty")
    return getattr(__import__("protocols.errors", None, None, ["x"]), "by_name")()
'''
_BOARD = "def never_called():\n    return 0\n"
_MAIN = "from firmware import user\n\nuser.check(b'x')\n"  # the entry point (a node's main.py)
_SOURCES = {"main.py": _MAIN, "protocols/__init__.py": "", "protocols/errors.py": _ERRORS, "firmware/__init__.py": "",
            "firmware/user.py": _USER, "board/__init__.py": _BOARD}


def test_what_nothing_uses_is_dropped_and_lines_stay() -> None:
    out, dropped = drop_unused(_SOURCES)
    assert dropped == {"protocols/errors.py": ["FrameError", "_unused_helper", "Unreached"]}
    errors = out["protocols/errors.py"]
    assert "class FrameError" not in errors and "class Unreached" not in errors
    assert "class DecodeError(ProtocolError):" in errors  # imported by firmware.user
    assert "def by_name():" in errors  # named in a string
    assert "def __getattr__(name):" in errors  # the runtime calls dunders
    assert errors.count("\n") == _ERRORS.count("\n")  # line numbers unchanged (tracebacks)
    assert out["board/__init__.py"] == _BOARD  # the board is named by its board.json: never trimmed


def test_a_program_outside_the_image_keeps_what_it_uses() -> None:
    host = "from protocols.errors import FrameError\n"
    _, dropped = drop_unused(_SOURCES, {"<users>/host.py": host})
    assert dropped == {"protocols/errors.py": ["_unused_helper", "Unreached"]}


def test_the_trimmed_modules_run_the_same_on_micropython(tmp_path: Path) -> None:
    """Compiled by mpy-cross and run by the unix port: same answers, less heap than the originals."""
    probe = ("import gc, sys; sys.path.insert(0, '.')\n"  # does what main.py does, and measures
             "gc.collect(); before = gc.mem_alloc()\n"
             "from firmware import user\n"
             "gc.collect(); print(gc.mem_alloc() - before)\n"
             "print(user.check(b'x'))\n"
             "try:\n    user.check(b'')\nexcept ValueError as e:\n    print(type(e).__name__, e)\n")
    original = run_compiled(_SOURCES, probe, tmp_path / "original").stdout.splitlines()
    trimmed = run_compiled(drop_unused(_SOURCES)[0], probe, tmp_path / "trimmed").stdout.splitlines()
    assert original[1:] == trimmed[1:] == ["1", "DecodeError empty"]
    assert int(trimmed[0]) < int(original[0])  # two classes and a function fewer
