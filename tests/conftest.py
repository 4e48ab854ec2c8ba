"""Fixtures for real parts (a Mosquitto broker on a free loopback port), and the order tests are handed out.

``make test`` runs the suite on several pytest-xdist workers with ``--dist loadfile``:
each test file runs whole on one worker, so a module-scoped fixture (a virtual
street) is built once, and a session-scoped one (the hil bench) once per worker
that runs such a file. Tests are independent of each other otherwise (free
ports, their own tmp dirs and brokers).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tools.broker import LocalBroker, mosquitto_path


@pytest.fixture
def mosquitto() -> Iterator[LocalBroker]:
    """A Mosquitto broker of our own on 127.0.0.1:<free port>; fails (not skips) if Mosquitto is missing."""
    assert mosquitto_path(), "mosquitto is not installed: `make test` installs it from Debian"
    with LocalBroker("mosquitto") as broker:
        yield broker


def shares_a_wide_fixture(item: pytest.Item) -> bool:
    """Whether the test uses one of our module- or session-scoped fixtures (a street, a bench).

    Fixtures of pytest and its plugins (``tmp_path_factory``...) have no base id and do not count.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        fixturedef.baseid and fixturedef.scope in ("module", "package", "session")
        for defs in info.name2fixturedefs.values()
        for fixturedef in defs
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files that build a street or a bench go first: they run longest, so the workers finish together."""
    heavy = {item.nodeid.split("::")[0] for item in items if shares_a_wide_fixture(item)}
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in heavy)  # stable: file order kept


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three workers per two CPUs.

    A serial run keeps about a third of a CPU busy: most tests wait on nodes, brokers
    and timers. More workers than CPUs fill that idle time; two per CPU starved the
    virtual street's real-time nodes on a 2-CPU machine.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(2, cpus * 3 // 2)
