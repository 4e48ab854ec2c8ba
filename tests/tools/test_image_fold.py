"""Constants folded at image build (tools.image_fold): fewer globals on the node, same behaviour."""

from __future__ import annotations

from pathlib import Path

from tests.tools.mpy_kit import run_compiled
from tools.image_fold import fold_constants

_CODES = '''\
from micropython import const

READ = const(4)
WRITE = const(READ + 12)
LIMIT = 125
NAMED = const(7)  # reached by name below: stays a global
TEXT = const("abc")
'''
_USER = '''\
from pkg.codes import READ, WRITE, LIMIT, TEXT
from pkg import codes as C


def answer(function, count, module):
    if function == READ and count <= LIMIT:
        return WRITE + C.NAMED + getattr(module, "NAMED")
    return TEXT
'''
_SOURCES = {"pkg/__init__.py": "", "pkg/codes.py": _CODES, "pkg/user.py": _USER}


def test_imported_integers_are_inlined_and_their_import_dropped() -> None:
    out = fold_constants(_SOURCES)["pkg/user.py"]
    assert "from pkg.codes import TEXT" in out.splitlines()[0]  # a string is not inlined: it stays imported
    assert "if function == 4 and count <= 125:" in out
    assert "return 16 + 7 + getattr(module, \"NAMED\")" in out  # C.NAMED folded; the string lookup untouched
    assert out.count("\n") == _USER.count("\n")  # line numbers unchanged (tracebacks)


def test_constants_nobody_reaches_leave_the_globals() -> None:
    out = fold_constants(_SOURCES)["pkg/codes.py"]
    assert "_READ = const(4)" in out and "_WRITE = const(_READ + 12)" in out
    assert "_LIMIT = const(125)" in out  # a plain integer becomes a constant
    assert "\nNAMED = const(7)" in out  # getattr(module, "NAMED"): kept
    assert "\nTEXT = const(\"abc\")" in out  # still imported by pkg.user


def test_a_rebound_name_is_not_folded() -> None:
    user = "from pkg.codes import READ\n\n\ndef f(READ=1):\n    return READ\n"
    out = fold_constants({"pkg/__init__.py": "", "pkg/codes.py": _CODES, "pkg/user.py": user})
    assert out["pkg/user.py"] == user
    assert "\nREAD = const(4)" in out["pkg/codes.py"]


def test_all_is_dropped_and_reexports_follow_the_chain() -> None:
    middle = "from pkg.codes import READ\n__all__ = ['READ']\n"
    last = "from pkg.middle import READ\nx = READ\n"
    out = fold_constants({"pkg/__init__.py": "", "pkg/codes.py": _CODES, "pkg/middle.py": middle,
                          "pkg/last.py": last})
    assert out["pkg/middle.py"] == "pass\npass\n"
    assert out["pkg/last.py"] == "pass\nx = 4\n"


def test_folded_modules_run_the_same_on_micropython(tmp_path: Path) -> None:
    """Compiled by mpy-cross and run by the unix port: same answers, the folded names gone from the globals."""
    compiled = fold_constants(_SOURCES)
    probe = ("import sys; sys.path.insert(0, '.')\n"
             "from pkg import codes, user\n"
             "print(user.answer(4, 10, codes), user.answer(3, 10, codes))\n"
             "print(sorted(k for k in codes.__dict__ if k.isupper()))\n"
             "print(sorted(k for k in user.__dict__ if k.isupper()))\n")
    result = run_compiled(compiled, probe, tmp_path)
    assert result.stdout.splitlines() == ["30 abc", "['NAMED', 'TEXT']", "['C', 'TEXT']"]


_FLOATS = {"pkg/__init__.py": "",
           "pkg/phys.py": "RATE = 0.25\n_OFFSET = 2.5\nSHARED = 1.5\nWORDS = 'abc'\n"
                          "KEYS = ('on', ('off', 2), 0.5)\n_BIG = (1, 1 << 40)\nLIVE = [1]\n\n\n"
                          "def f(a):\n    return a * RATE + _OFFSET + SHARED + KEYS[1][1] + len(_BIG) + LIVE[0]\n",
           "pkg/other.py": "from pkg.phys import SHARED\n\n\ndef g():\n    return SHARED * 2\n"}


def test_plain_floats_and_tuples_become_constants_and_leave_the_globals(tmp_path: Path) -> None:
    """A float or a tuple of literals assigned once is a const(); private unless another module imports it."""
    out = fold_constants(_FLOATS)
    assert "_RATE = const(0.25)" in out["pkg/phys.py"] and "_OFFSET = const(2.5)" in out["pkg/phys.py"]
    assert "\nSHARED = const(1.5)" in out["pkg/phys.py"]  # imported by pkg.other: stays a global
    assert "_KEYS = const(('on', ('off', 2), 0.5))" in out["pkg/phys.py"]
    assert "\nWORDS = 'abc'" in out["pkg/phys.py"]  # a plain string is not wrapped
    assert "\n_BIG = (1, 1 << 40)" in out["pkg/phys.py"]  # not a literal (an expression): left alone
    assert "\nLIVE = [1]" in out["pkg/phys.py"]  # a list may change: never a constant
    assert out["pkg/other.py"] == _FLOATS["pkg/other.py"]
    probe = ("import sys; sys.path.insert(0, '.')\n"
             "from pkg import phys, other\n"
             "print(phys.f(4.0), other.g())\n"
             "print(sorted(k for k in phys.__dict__ if k.isupper()))\n")
    result = run_compiled(out, probe, tmp_path)
    assert result.stdout.splitlines() == ["10.0 3.0", "['LIVE', 'SHARED', 'WORDS', '_BIG']"]

