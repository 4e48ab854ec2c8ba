"""Private names shortened at image build (tools.image_names): fewer interned names on the node, same behaviour."""

from __future__ import annotations

from pathlib import Path

from tests.tools.mpy_kit import run_compiled
from tools.image_names import shorten_names

_COUNTER = '''\
from micropython import const

_STEP = const(2)


class Counter:
    def __init__(self, start):
        self._count = start
        self._history = []
        self.shared_note = None

    def _remember(self, value):
        self._history.append(value)

    def bump(self, _by=_STEP):
        self._count += _by
        self._remember(self._count)
        return _double(self._count)

    def visible(self):
        return getattr(self, "_history")


def _double(value):
    _local = value * 2
    return _local
'''
_TALLY = '''\
class Tally:
    def __init__(self):
        self._total = 0
        self._seen = 0

    def add(self, value):
        self._total += value
        self._seen += 1
        return self._total, self._seen


def _mean(tally):
    return tally._total / tally._seen


def report(tally):
    return _mean(tally)
'''
_BASE = '''\
class Base:
    def __init__(self):
        self._level = 1

    def level(self):
        return self._level

    def _reset(self):  # called by the subclass only: a method is an attribute all the same
        self._level = 0
'''
_CHILD = '''\
from pkg.base import Base


class Child(Base):
    def __init__(self):
        super().__init__()
        self._mode = 7

    def mode(self):
        self._reset()
        return self._mode * (self.level() + 1)
'''
_SOURCES = {"pkg/__init__.py": "", "pkg/counter.py": _COUNTER, "pkg/tally.py": _TALLY, "pkg/base.py": _BASE,
            "pkg/child.py": _CHILD}


def test_names_private_to_one_module_share_one_short_series() -> None:
    out, renamed = shorten_names(_SOURCES)
    counter = renamed["pkg/counter.py"]
    assert set(counter) == {"_count", "_remember", "_by", "_double", "_local"}
    assert renamed["pkg/tally.py"] == {"_mean": "_a"}  # the first of the series, reused in every module
    assert "_by" not in out["pkg/counter.py"] and f"def bump(self, {counter['_by']}=_STEP):" in out["pkg/counter.py"]
    assert out["pkg/counter.py"].count("\n") == _COUNTER.count("\n")  # line numbers unchanged (tracebacks)


def test_names_seen_from_outside_are_kept() -> None:
    out, renamed = shorten_names(_SOURCES)
    counter = out["pkg/counter.py"]
    assert "self._history" in counter  # reached by its name as a string: getattr(self, "_history")
    assert "_STEP = const(2)" in counter  # a folded constant never reaches the node: no need
    assert "tally._total / tally._seen" in out["pkg/tally.py"]  # reached on another object than self
    assert "self._total += value" in out["pkg/tally.py"]
    assert "pkg/base.py" not in renamed and "pkg/child.py" not in renamed  # a class inherits across modules


def test_a_name_two_modules_use_is_kept() -> None:
    other = "def f(counter):\n    return counter._count\n"
    _, renamed = shorten_names({**_SOURCES, "pkg/other.py": other})
    assert "_count" not in renamed["pkg/counter.py"]


def test_a_program_outside_the_image_counts_as_a_user() -> None:
    """A host that subclasses an image's class on the node: that class's module keeps its attribute names."""
    host = "from pkg.counter import Counter\n\n\nclass Host(Counter):\n    def mark(self):\n        self._mark = 1\n"
    out, renamed = shorten_names(_SOURCES, {"<users>/host.py": host})
    assert "<users>/host.py" not in out  # not rewritten
    assert set(renamed["pkg/counter.py"]) == {"_by", "_double", "_local"}  # its attributes kept: _count, _remember


def test_shortened_modules_run_the_same_on_micropython_with_fewer_names(tmp_path: Path) -> None:
    """Compiled by mpy-cross and run by the unix port: same answers, fewer interned names than the originals."""
    probe = ("import sys, micropython; sys.path.insert(0, '.')\n"
             "from pkg import counter, tally, child\n"
             "c = counter.Counter(3)\n"
             "print(c.bump(), c.bump(5), c.visible())\n"
             "t = tally.Tally(); t.add(4)\n"
             "print(t.add(6), tally.report(t), child.Child().mode())\n"
             "micropython.qstr_info()\n")
    original = run_compiled(_SOURCES, probe, tmp_path / "original").stdout.splitlines()
    shortened = run_compiled(shorten_names(_SOURCES)[0], probe, tmp_path / "shortened").stdout.splitlines()
    assert original[:2] == shortened[:2] == ["10 20 [5, 10]", "(10, 2) 5.0 7"]

    def names(lines: list[str]) -> int:
        return int(next(line for line in lines if "n_qstr=" in line).split("n_qstr=")[1].split(",")[0])

    # _by _count _double _remember _mean (a local such as _local is never interned): five names, now
    # _a _b _c _e (_d is _local), _mean being _a too
    assert names(shortened) == names(original) - 1
