"""Waiting in async tests for something the system under test does on its own time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def until(check: Callable[[], Any], within: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check()`` until truthy, without blocking the loop; its value. Fails after ``within`` seconds
    (a bound for a hung test, not a timing claim: these machines are shared)."""
    deadline = time.monotonic() + within
    while not (value := check()):
        assert time.monotonic() < deadline, f"{what} not reached in {within} s"
        await asyncio.sleep(0.02)
    return value
