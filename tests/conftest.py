"""Fixtures for real parts: a Mosquitto broker on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tools.broker import LocalBroker, mosquitto_path


@pytest.fixture
def mosquitto() -> Iterator[LocalBroker]:
    """A Mosquitto broker of our own on 127.0.0.1:<free port>; fails (not skips) if Mosquitto is missing."""
    assert mosquitto_path(), "mosquitto is not installed: `make test` installs it from Debian"
    with LocalBroker("mosquitto") as broker:
        yield broker
