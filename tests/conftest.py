"""Fixtures for real parts (a Mosquitto broker on a free loopback port), and how tests share workers.

``make test`` runs the suite on several pytest-xdist workers (``--dist loadgroup``).
Tests are independent (free ports, their own tmp dirs and brokers), so they may
go to any worker; but a test that uses one of our module- or session-scoped
fixtures (a virtual street, the hil bench) is grouped with the others that share
it, so that the fixture is built once, on one worker, as in a serial run.
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


def shared_fixture_group(item: pytest.Item) -> str | None:
    """The xdist group of a test that shares a module- or session-scoped fixture of ours, else None.

    Session-scoped fixtures group every test below the conftest that defines them;
    module-scoped ones group the tests of their module. Fixtures of pytest and its
    plugins (``tmp_path_factory``...) have no base id and do not count.
    """
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    module_group = None
    for defs in info.name2fixturedefs.values():
        for fixturedef in defs:
            if not fixturedef.baseid:
                continue
            if fixturedef.scope == "session":
                return fixturedef.baseid
            if fixturedef.scope in ("module", "package"):
                module_group = item.nodeid.split("::")[0]
    return module_group


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group tests that share a wide fixture, and hand the groups out first (they are the longest)."""
    grouped: list[pytest.Item] = []
    single: list[pytest.Item] = []
    for item in items:
        group = shared_fixture_group(item)
        if group is None:
            single.append(item)
        else:
            item.add_marker(pytest.mark.xdist_group(group))
            grouped.append(item)
    items[:] = grouped + single


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three workers per two CPUs.

    A serial run keeps about a third of a CPU busy: most tests wait on nodes, brokers
    and timers. More workers than CPUs fill that idle time; two per CPU starved the
    virtual street's real-time nodes on a 2-CPU machine.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(2, cpus * 3 // 2)
