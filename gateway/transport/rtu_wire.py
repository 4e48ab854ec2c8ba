"""pymodbus's serial transport, timed for a Modbus RTU line: arrivals stamped, frames sent on the silence's end.

:class:`ModbusBus` keeps the line's t3.5 silence between frames. Three things
about pymodbus's serial transport (3.x, ``SerialTransport``) would make that
silence longer than the spec's:

- it sees an answer's last bytes only when its reader callback runs, and
  :class:`WireClock` stamps them there, before the framer's work (t3.5 counts
  from the bytes, not from when they were handled);
- its ``write`` only queues the frame and asks the event loop to call back when
  the device is writable, one more turn of the loop (0.2 ms measured) after the
  frame was built. :class:`WireClock` writes at once instead, and waits the last
  part of the silence (:data:`FINE_WAIT` at most) right before, so pymodbus
  builds the frame while the line is still quiet;
- the work a transaction's caller does with its result (decoding, storing a
  reading) would sit between one frame and the next: :meth:`WireClock.after_send`
  runs it once the next frame is on the wire, while the node answers.

Its reader is ``loop.add_reader`` on POSIX (pymodbus polls every 0.5 ms only on
Windows, ``force_poll``): nothing here polls. The attributes looked up
(``ctx``, ``transport``, ``sync_serial``, ``intern_write_buffer``) are not
public API: each is looked up defensively, and without them the bus keeps the
whole silence itself (``timed`` stays False).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import termios
import time
from collections.abc import Callable
from typing import Any

from pymodbus.client import AsyncModbusSerialClient

from gateway.transport.serial_timing import FINE_WAIT

HANDOFF_IDLE = 0.005
"""Seconds beyond t3.5 after which work left for "after the next frame" runs anyway: no frame is coming."""
TIMER_SLACK_NS = 1
"""The thread's timer slack while a serial line is open (Linux ``PR_SET_TIMERSLACK``; the default, 50 µs, let
the last part of a silence overrun by 0.1 ms at the median where 1 ns gives 0.05 ms, measured here)."""
_PR_SET_TIMERSLACK = 29


def precise_sleeps() -> bool:
    """Ask Linux to wake this thread's sleeps on time (:data:`TIMER_SLACK_NS`); False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(_PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0) == 0)
    except (OSError, AttributeError):  # not Linux, or no prctl
        return False


class WireClock:
    """When the line last carried bytes, when it may carry the next frame, and what runs once it does.

    Args:
        silence: t3.5 in seconds.
    """

    def __init__(self, silence: float) -> None:
        self.silence = silence
        self.heard = 0.0
        """When bytes last arrived from the line (``time.monotonic``)."""
        self.quiet_until = 0.0
        """The earliest moment the next frame may start (t3.5, or a broadcast's turnaround)."""
        self.timed = False
        """Whether frames are written by :meth:`attach`'s writer, which waits out the silence's last part."""
        self.on_write: Callable[[float, float], None] | None = None
        """Told ``(heard, written)`` as each timed frame is written: when the line's bytes were last seen
        arriving, and when this frame goes to the device, just before the write (``time.monotonic``); for
        benches that split the silence between an answer and the next request into its parts."""
        self._after: list[Callable[[], None]] = []
        self._idle: asyncio.TimerHandle | None = None

    def attach(self, client: AsyncModbusSerialClient) -> None:
        """Stamp the client's arrivals and write its frames on time (see the module docstring)."""
        protocol: Any = getattr(client, "ctx", None)
        receive = getattr(protocol, "data_received", None)
        if protocol is None or receive is None:
            return

        def stamped(data: bytes) -> None:
            self.heard = time.monotonic()
            receive(data)

        protocol.data_received = stamped
        transport = getattr(protocol, "transport", None)
        port = getattr(transport, "sync_serial", None)
        queue = getattr(transport, "intern_write_buffer", None)
        if transport is None or port is None or not isinstance(queue, list):
            self.timed = False
            return
        queued_write = transport.write
        fd = port.fileno()

        def write_now(data: bytes) -> None:
            if transport.intern_write_buffer:  # something still queued: keep the order
                queued_write(data)
                return
            wait = self.quiet_until - time.monotonic()
            if wait > 0:
                # The frame was built during the silence; its last part is waited out exactly (the loop's
                # timers are whole milliseconds), at most FINE_WAIT plus the frame's building.
                time.sleep(wait)
            if self.on_write is not None:  # before the write: the device's reader may run before it returns
                self.on_write(self.heard, time.monotonic())
            try:
                sent = os.write(fd, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(data):
                queued_write(data[sent:])  # the device's buffer is full: the transport's queue takes the rest
            self._sent()

        transport.write = write_now
        self.timed = True
        precise_sleeps()

    def frame_done(self, asked: float) -> None:
        """A transaction that started at ``asked`` ended: the next frame waits t3.5 after its last bytes."""
        heard = self.heard if self.heard > asked else time.monotonic()
        self.quiet_until = max(self.quiet_until, heard + self.silence)

    async def wait_quiet(self) -> None:
        """Sleep (without holding the loop) until the silence is nearly over; all of it if frames are not timed."""
        pause = self.quiet_until - time.monotonic()
        if pause > FINE_WAIT:
            # The event loop's timers are whole milliseconds (epoll): wake a little early ...
            await asyncio.sleep(pause - FINE_WAIT)
            pause = self.quiet_until - time.monotonic()
        if pause > 0 and not self.timed:
            # ... and wait out the rest exactly: a t3.5 of 1.75 ms would otherwise grow to 2.5 ms.
            time.sleep(min(pause, FINE_WAIT))  # noqa: ASYNC251 - under 1 ms, on purpose (see FINE_WAIT)

    def after_send(self, work: Callable[[], None]) -> None:
        """Run ``work`` once the next frame is on the wire (or soon, if none follows within t3.5 and a bit)."""
        self._after.append(work)
        if self._idle is None:
            loop = asyncio.get_running_loop()
            self._idle = loop.call_later(self.silence + FINE_WAIT + HANDOFF_IDLE, self._sent)

    def flush(self) -> None:
        """Run the work waiting for the next frame now (the line closes: no frame follows)."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        work, self._after = self._after, []
        for job in work:
            job()

    def _sent(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if not self._after:
            return
        work, self._after = self._after, []
        loop = asyncio.get_running_loop()
        for job in work:  # in the loop's next turn: not inside pymodbus's write, whose caller waits to listen
            loop.call_soon(job)


async def drained(client: AsyncModbusSerialClient) -> None:
    """Wait until what pymodbus wrote has left the serial device (``tcdrain``); at once if that cannot be known.

    pymodbus may queue a frame and write it when the device is writable; its
    serial transport keeps the queue in ``intern_write_buffer`` and the pyserial
    port in ``sync_serial`` (looked up defensively: neither is public API).
    """
    transport = getattr(client.ctx, "transport", None)
    port = getattr(transport, "sync_serial", None)
    if port is None:
        return
    for _ in range(100):  # the writer callback runs within a loop iteration or two
        if not getattr(transport, "intern_write_buffer", None):
            break
        await asyncio.sleep(0)
    with contextlib.suppress(OSError, termios.error, ValueError):
        await asyncio.to_thread(termios.tcdrain, port.fileno())
