"""Fixtures for real parts (a Mosquitto broker on a free loopback port, plain or with an ACL), and the order
tests are handed out.

``make test`` runs the suite on several pytest-xdist workers with ``--dist loadfile``:
each test file runs whole on one worker, so a module-scoped fixture (a virtual
street) is built once, and a session-scoped one (the hil bench) once per worker
that runs such a file. Tests are independent of each other otherwise (free
ports, their own tmp dirs and brokers).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.broker import LocalBroker, mosquitto_path


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C as a person gives it: tests stop `streetedge sim` and the daemon with SIGINT, so their
    children must not inherit an ignored SIGINT (a shell without job control starts `cmd &` so)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def mosquitto() -> Iterator[LocalBroker]:
    """A Mosquitto broker of our own on 127.0.0.1:<free port>; fails (not skips) if Mosquitto is missing."""
    assert mosquitto_path(), "mosquitto is not installed: `make test` installs it from Debian"
    with LocalBroker("mosquitto") as broker:
        yield broker


ACL_ALLOWED = "allowed/"
"""Topics under this prefix anyone may publish to on the ``acl_broker``; everything else is read-only."""


@pytest.fixture
def acl_broker() -> Iterator[LocalBroker]:
    """Mosquitto where anonymous clients may publish only under :data:`ACL_ALLOWED`, and read everything."""
    # A folder the broker can read after dropping root privileges (pytest's own are private).
    folder = Path(tempfile.mkdtemp(prefix="streetedge-acl-"))
    folder.chmod(0o755)
    acl = folder / "acl"
    acl.write_text(f"topic readwrite {ACL_ALLOWED}#\ntopic read #\n")
    acl.chmod(0o644)
    try:
        with LocalBroker("mosquitto", extra_config=f"acl_file {acl}\n") as broker:
            yield broker
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def widest_own_fixture(item: pytest.Item) -> str | None:
    """The widest scope of our fixtures the test uses: "session" (the hil bench), "module" (a street), or None.

    Fixtures of pytest and its plugins (``tmp_path_factory``...) have no base id and do not count.
    """
    info = getattr(item, "_fixtureinfo", None)
    scopes = {
        fixturedef.scope
        for defs in (info.name2fixturedefs.values() if info is not None else ())
        for fixturedef in defs
        if fixturedef.baseid
    }
    if "session" in scopes:
        return "session"
    return "module" if scopes & {"module", "package"} else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Hand out the longest files first, those on the session bench last.

    The longest: files that share a street, and the other system tests (each builds
    its own rig). A session fixture lives until its worker ends: started last, the
    bench does not poll its nodes in the background of the rest of the run.
    """
    scopes: dict[str, set[str | None]] = {}
    for item in items:
        scopes.setdefault(item.nodeid.split("::")[0], set()).add(widest_own_fixture(item))

    def rank(item: pytest.Item) -> int:
        file = item.nodeid.split("::")[0]
        if "session" in scopes[file]:
            return 2
        return 0 if "module" in scopes[file] or file.startswith("hil_tests/") else 1

    items.sort(key=rank)  # stable: the order within a rank is kept


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers per CPU.

    A serial run keeps about a third of a CPU busy: most tests wait on nodes, brokers
    and timers. More workers than CPUs fill that idle time, but not so many that the
    virtual street's nodes, which run in real time, wait for a CPU. Measured on 2 CPUs
    (2026-12-06, 1,318 tests): three workers 8 min 38 s with both CPUs half idle, four
    workers 5 min 49 s.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(2, cpus * 2)


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two linked pseudo-terminals from socat: (master end, server end)."""
    socat = shutil.which("socat")
    assert socat, "socat is not installed: `make test` installs it (Debian package 'socat')"
    a, b = tmp_path / "master", tmp_path / "server"
    proc = subprocess.Popen([socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            assert proc.poll() is None, "socat exited before creating the pty pair"
            assert time.monotonic() < deadline, "socat did not create the pty pair in 10 s"
            time.sleep(0.01)
        yield str(a), str(b)
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
