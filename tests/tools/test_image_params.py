"""Parameters shortened at image build (tools.image_params): fewer interned names on the node, same behaviour."""

from __future__ import annotations

from pathlib import Path

from tests.tools.mpy_kit import run_compiled
from tools.image_params import shorten_parameters

_MATH = '''\
LIMIT = 10


def scaled(reading, factor, offset=0):
    total = reading * factor + offset
    return min(total, LIMIT * factor)


def checked(value, limit):  # `limit` is passed by keyword below: kept
    try:
        return int(value) <= limit
    except ValueError as value:  # rebinds the parameter: kept
        return str(value)


def counted(items, label):
    return ["%s%d" % (label, n) for n in items] + [f"{label}!"]  # an f-string uses `label`: kept


def closure(base):
    def inner(step):  # a nested function keeps its parameters; it reads base
        return base + step
    return inner


class Meter:
    def __init__(self, litres):
        self.litres = litres

    def add(self, pulses, per_pulse):
        self.litres += pulses * per_pulse
        return self.litres
'''
_USER = '''\
from pkg.maths import Meter, checked, closure, counted, scaled


def run():
    m = Meter(1)
    m.add(3, 2)
    return scaled(2, 3), scaled(2, 3, 1), checked("4", limit=5), checked("x", 1), counted([1, 2], "n"), \\
        closure(2)(5), m.add(1, 1)
'''
_SOURCES = {"pkg/__init__.py": "", "pkg/maths.py": _MATH, "pkg/user.py": _USER}


def test_parameters_get_the_shared_series_where_nothing_outside_sees_them() -> None:
    out, count = shorten_parameters(_SOURCES)
    maths = out["pkg/maths.py"]
    assert "def scaled(a_, b_, c_=0):" in maths and "total = a_ * b_ + c_" in maths
    assert "return min(total, LIMIT * b_)" in maths  # the global and the builtin untouched
    assert "def checked(value, limit):" in maths
    assert "def counted(a_, label):" in maths and "for n in a_]" in maths
    assert "def closure(a_):" in maths and "def inner(step):" in maths and "return a_ + step" in maths
    assert "def add(self, a_, b_):" in maths and "def __init__(self, litres):" in maths  # an attribute's name
    assert count == 7
    assert maths.count("\n") == _MATH.count("\n")


def test_a_dictionary_unpacked_into_keywords_renames_nothing() -> None:
    user = "from pkg.maths import scaled\n\n\ndef run(options):\n    return scaled(**options)\n"
    out, count = shorten_parameters({**_SOURCES, "pkg/user.py": user})
    assert count == 0 and out["pkg/maths.py"] == _MATH


def test_a_keyword_from_a_program_outside_the_image_keeps_the_name() -> None:
    host = "from pkg.maths import scaled\nscaled(1, 2, offset=3)\n"
    _, count = shorten_parameters(_SOURCES, {"<users>/host.py": host})
    assert count == 6  # scaled's offset kept


def test_shortened_parameters_run_the_same_on_micropython_with_fewer_names(tmp_path: Path) -> None:
    """Compiled by mpy-cross and run by the unix port: same answers, fewer interned names than the originals."""
    probe = ("import sys, micropython; sys.path.insert(0, '.')\n"
             "from pkg import user\n"
             "print(user.run())\n"
             "micropython.qstr_info()\n")
    original = run_compiled(_SOURCES, probe, tmp_path / "original").stdout.splitlines()
    shortened = run_compiled(shorten_parameters(_SOURCES)[0], probe, tmp_path / "shortened").stdout.splitlines()
    assert original[0] == shortened[0] == "(6, 7, True, \"invalid syntax for integer with base 10: 'x'\", " \
                                          "['n1', 'n2', 'n!'], 7, 8)"

    def names(lines: list[str]) -> int:
        return int(next(line for line in lines if "n_qstr=" in line).split("n_qstr=")[1].split(",")[0])

    # reading factor offset base pulses per_pulse (items is in the firmware's own pool): six names, now a_ b_ c_
    assert names(shortened) == names(original) - 3
