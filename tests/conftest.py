"""Fixtures for real parts: a Mosquitto broker on a free loopback port, plain or with an ACL."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.broker import LocalBroker, mosquitto_path


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
