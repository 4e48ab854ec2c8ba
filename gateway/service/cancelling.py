"""Ending asyncio tasks for sure: cancel, wait, and cancel again while they run on.

One cancellation is not always enough. On Python 3.11, ``asyncio.wait_for`` returns
its result and forgets the cancellation when both arrive in the same loop step
(CPython gh-86296, fixed in 3.12); pymodbus awaits every Modbus answer that way,
so a poller cancelled just as an answer came in polls on. Whoever then waits
for it once waits for ever: that was the gateway that did not finish stopping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

CANCEL_AGAIN = 0.5
"""Seconds a cancelled task gets to end before it is cancelled again."""


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], *, again_after: float = CANCEL_AGAIN) -> None:
    """Cancel ``tasks`` and return once every one has ended, cancelling again those that run on.

    The tasks' own outcomes (results, errors, cancellation) are left on them for the caller to
    inspect. A cancellation of the caller while it waits does not leave the tasks running: they are
    still ended, then the caller's cancellation is raised.
    """
    pending = {t for t in tasks if not t.done()}
    interrupted: asyncio.CancelledError | None = None
    while pending:
        for task in pending:
            task.cancel()
        try:
            _, pending = await asyncio.wait(pending, timeout=again_after)
        except asyncio.CancelledError as exc:
            interrupted = exc  # end them anyway; the caller's cancellation follows
    if interrupted is not None:
        raise interrupted
