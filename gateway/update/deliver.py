"""Deliver an update package to one node over its bus, and see the node run and confirm it.

Steps (the records: :mod:`protocols.update`):

1. read the node's status: it must have code slots and no image on trial;
2. BEGIN with the package's size, health time, hash and MAC: a node already
   holding part of the same update keeps it, so a delivery cut short (gateway
   restart, node power cut, bus trouble) resumes where the node's status says;
3. the image in ``CHUNK``-byte records, in order, each one its own bus
   transaction at ``priority`` (behind the polls: they go first whenever both
   wait for the line); a chunk without an answer is sent again, a refused one
   makes the delivery re-read the status and resume from there;
4. COMMIT: the node checks hash and MAC, switches slots and resets; a refusal
   raises :class:`UpdateRefused` with the node's reason;
5. wait for the node: it must come back on the new slot and confirm it (it
   has answered and run for its health time, so its status is first read
   one health time after the commit); a node that rolled back raises
   :class:`UpdateRolledBack`.

Every failure is a :class:`UpdateError` that says what happened, and leaves
the node running its old image or, once switched, the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any, Protocol

from gateway.contracts import update as records
from gateway.errors import GatewayError
from gateway.transport.bus import BusError, NodeError
from gateway.update.package import UpdatePackage

UPDATE_PRIORITY = 20
"""Bus priority of update chunks: after the polls (10) and commands (0)."""


FINISHED_TOGETHER = 4
"""Nodes of a line committed and confirmed at once after a broadcast. A node on trial rolls back unless
it is addressed within 4x its health time; a node resetting into its image leaves each status read of it
unanswered for the bus's whole timeout, so with many at once the line cannot reach every node in time."""


class UpdateError(GatewayError):
    """An update of a node did not complete."""


class UpdateRefused(UpdateError):  # noqa: N818 - names the outcome, like NodeTimeout
    """The node refused the image; ``reason`` is its result (``protocols.update.RESULTS``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UpdateRolledBack(UpdateError):  # noqa: N818 - names the outcome
    """The node switched to the image, found it unhealthy and went back to its old one."""


class FileRecordBus(Protocol):
    """What a delivery needs of a bus (``gateway.transport.modbus_rtu.ModbusBus`` has it)."""

    async def file_record(self, unit: int, file: int, record: int, *, data: bytes = b"", count: int = 0,
                          priority: int = ...) -> bytes:
        """Write ``data`` to one file record (function 21; unit 0 broadcasts), or read ``count`` words (20)."""


Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: phase ``"sending"`` (bytes), ``"switching"``, ``"confirmed"``."""


async def node_status(bus: FileRecordBus, unit: int, priority: int = UPDATE_PRIORITY) -> dict[str, Any]:
    """The node's update status (``protocols.update.parse_status``)."""
    data = await bus.file_record(unit, records.FILE_CONTROL, 0, count=records.STATUS_WORDS, priority=priority)
    status: dict[str, Any] = records.parse_status(data)
    return status


async def deliver(
    bus: FileRecordBus, unit: int, package: UpdatePackage, *, progress: Progress | None = None,
    priority: int = UPDATE_PRIORITY, attempts: int = 5, back_within: float = 120.0,
) -> dict[str, Any]:
    """Update node ``unit`` on ``bus`` with ``package``; the node's final status. Raises UpdateError."""
    say = progress or (lambda phase, done, total: None)
    status = await _retry(lambda: node_status(bus, unit, priority), attempts, unit, "read its status")
    if not status["has_slots"]:
        raise UpdateError(f"unit {unit} has no code slots (its image runs from files): provision it again")
    if status["trial"]:
        raise UpdateError(f"unit {unit} has a new image on trial; try again once it is confirmed")
    slot = status["active"]
    rolled = status["rolled_back"]
    begin = records.begin_record(len(package.image), package.health_s, package.digest, package.tag)
    control = records.FILE_CONTROL
    try:
        await _retry(lambda: bus.file_record(unit, control, 0, data=begin, priority=priority), attempts, unit,
                     "start the update")
    except UpdateError as exc:
        status = await node_status(bus, unit, priority)
        if status["result"]:
            reason = records.RESULTS.get(status["result"], str(status["result"]))
            raise UpdateRefused(f"unit {unit} refused the image: {reason}", reason) from exc
        raise
    status = await node_status(bus, unit, priority)
    size = len(package.image)
    sent = status["received"]
    failures = 0
    while sent < size:
        chunk = package.image[sent:sent + records.CHUNK]
        if len(chunk) % 2:
            chunk += b"\0"  # records are words; the node keeps only the image's bytes
        try:
            await bus.file_record(unit, records.FILE_IMAGE, sent // records.CHUNK, data=chunk, priority=priority)
            sent += records.CHUNK
            failures = 0
        except BusError as exc:
            failures += 1
            if failures > attempts:
                raise UpdateError(f"unit {unit}: the image stopped at byte {sent} of {size}: {exc}") from exc
            # Lost answer, refusal or a node that restarted: its status says where to go on.
            status = await _retry(lambda: node_status(bus, unit, priority), attempts, unit, "read its status")
            if status["state"] != records.RECEIVING:  # e.g. the node restarted and dropped its refusal
                await _retry(lambda: bus.file_record(unit, control, 0, data=begin, priority=priority),
                             attempts, unit, "resume the update")
                status = await node_status(bus, unit, priority)
            sent = status["received"]
        say("sending", min(sent, size), size)
    try:
        await bus.file_record(unit, control, 0, data=bytes((0, records.OP_COMMIT)), priority=priority)
    except NodeError as exc:
        status = await node_status(bus, unit, priority)
        reason = records.RESULTS.get(status["result"], str(status["result"]))
        raise UpdateRefused(f"unit {unit} refused the image: {reason}", reason) from exc
    except BusError:
        pass  # the answer may be lost as the node resets: its status tells
    say("switching", size, size)
    # The node cannot confirm before it has run its health time: asking earlier finds it resetting, and
    # each unanswered read holds the line for the whole answer timeout (polls and other nodes wait).
    await asyncio.sleep(min(package.health_s, back_within / 4))
    return await _await_confirmation(bus, unit, slot, rolled, priority, back_within, say, size)


async def deliver_bus(
    bus: FileRecordBus, units: list[int], package: UpdatePackage, *, progress: Progress | None = None,
    priority: int = UPDATE_PRIORITY, attempts: int = 5, back_within: float = 120.0, passes: int = 3,
    together: int = FINISHED_TOGETHER,
) -> dict[int, dict[str, Any] | UpdateError]:
    """Update every unit of ``units`` on one line at once; per unit its final status or its UpdateError.

    Each node is started (BEGIN) on its own, then the image is broadcast (unit 0: every node takes
    each chunk in one frame, none answers) from the chunk the furthest-behind node needs; a node that
    missed a chunk ignores the rest, so while a quarter of the nodes or more still lack bytes another
    pass goes out (at most ``passes``), and :func:`deliver` then finishes each node on its own (what it
    lacks, the commit, its confirmation), ``together`` nodes at a time, their steps interleaved on the line.
    """
    say = progress or (lambda phase, done, total: None)
    results: dict[int, dict[str, Any] | UpdateError] = {}
    starts: list[int] = []
    begin = records.begin_record(len(package.image), package.health_s, package.digest, package.tag)

    async def start(unit: int) -> None:
        status = await node_status(bus, unit, priority)
        if status["has_slots"] and not status["trial"]:
            await bus.file_record(unit, records.FILE_CONTROL, 0, data=begin, priority=priority)
            starts.append((await node_status(bus, unit, priority))["received"])

    for unit in units:
        with contextlib.suppress(BusError):  # deliver() below tries again and says what is wrong with this node
            await start(unit)
    size = len(package.image)
    for _ in range(passes):
        sent = min(starts, default=size)
        if sent >= size:
            break
        while sent < size:
            chunk = package.image[sent:sent + records.CHUNK]
            await bus.file_record(0, records.FILE_IMAGE, sent // records.CHUNK,
                                  data=chunk + b"\0" * (len(chunk) % 2), priority=priority)
            sent += records.CHUNK
            say("sending", min(sent, size), size)
        # A node that missed a chunk took none after it: another pass from the furthest behind, if worth it.
        starts = []
        for unit in units:
            with contextlib.suppress(BusError):
                status = await node_status(bus, unit, priority)
                if status["state"] == records.RECEIVING:
                    starts.append(status["received"])
        if len(starts) * 4 < len(units):
            break  # a few stragglers: cheaper to finish them one by one

    finishing = asyncio.Semaphore(together)

    async def finish(unit: int) -> None:
        async with finishing:
            try:
                results[unit] = await deliver(bus, unit, package, priority=priority, attempts=attempts,
                                              back_within=back_within)
            except UpdateError as exc:
                results[unit] = exc

    await asyncio.gather(*(finish(unit) for unit in units))
    say("confirmed", sum(isinstance(r, dict) for r in results.values()), len(units))
    return results


async def await_confirmation(bus: FileRecordBus, unit: int, old_slot: int, rolled: int, *,
                             priority: int = UPDATE_PRIORITY, back_within: float = 120.0,
                             progress: Progress | None = None, size: int = 0) -> dict[str, Any]:
    """Wait until node ``unit``, committed while on ``old_slot`` with ``rolled`` rollbacks, confirms its new slot.

    Only reads the node's status: a roll-out resumed after a gateway restart checks a node that was
    committing with it, and never sends it anything. Raises UpdateRolledBack, UpdateRefused or UpdateError.
    """
    return await _await_confirmation(bus, unit, old_slot, rolled, priority, back_within,
                                     progress or (lambda phase, done, total: None), size)


async def _await_confirmation(bus: FileRecordBus, unit: int, old_slot: int, rolled: int, priority: int,
                              back_within: float, say: Progress, size: int) -> dict[str, Any]:
    deadline = time.monotonic() + back_within
    while time.monotonic() < deadline:
        try:
            status = await node_status(bus, unit, priority)
        except BusError:
            await asyncio.sleep(0.5)  # resetting
            continue
        if status["rolled_back"] > rolled:
            raise UpdateRolledBack(f"unit {unit} ran the new image but rolled back to its old one")
        if status["active"] != old_slot and not status["trial"]:
            say("confirmed", size, size)
            return status
        if status["active"] == old_slot and status["result"] and status["result"] != records.OK:
            reason = records.RESULTS.get(status["result"], str(status["result"]))
            raise UpdateRefused(f"unit {unit} refused the image: {reason}", reason)
        await asyncio.sleep(0.5)
    raise UpdateError(f"unit {unit} did not confirm the new image within {back_within:.0f} s")


async def _retry(call: Callable[[], Any], attempts: int, unit: int, what: str) -> Any:
    for attempt in range(attempts):
        try:
            return await call()
        except NodeError as exc:
            if exc.code is not None:
                raise UpdateError(f"unit {unit} refused to {what}: Modbus exception {exc.code}") from exc
            last: BusError = exc
        except BusError as exc:
            last = exc
        await asyncio.sleep(0.2 * (attempt + 1))
    raise UpdateError(f"unit {unit}: could not {what}: {last}") from last
