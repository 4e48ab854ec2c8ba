"""Fixtures for firmware tests: a virtual street of real unix-port nodes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.sim.street import VirtualStreet


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VirtualStreet]:
    """Three lamp nodes (units 1..3) on one unpaced bus at 19200 baud, for the whole module."""
    s = VirtualStreet(tmp_path_factory.mktemp("street"), nodes=3)
    with s:
        s.start()
        yield s
