"""The node's Modbus RTU slave: an asyncio loop around the sans-IO framer and responder.

It owns the two things ``protocols.modbus`` leaves to adapters: the clock (a
3.5-character silence ends a frame) and the port. Buffers are allocated once;
a request costs the framer's small ``Request`` object and nothing else here.

Answers keep the spec's inter-frame silence too: an answer goes out no sooner
than t3.5 after the read that completed its request (the request's last byte
arrived no later than that read), so every frame on the line is preceded by
3.5 characters of silence (1.75 ms above 19200 bit/s), as the Modbus serial
line spec asks of every device.

Silence detection: the loop cannot timestamp single bytes, only reads. A read
that took at least t3.5 looks like a silence before its bytes, but the wait
also counts the time other tasks held the loop while the bytes came in (a
sampler, a collection). So the bytes are first taken as a continuation: if a
request for this node (or a broadcast) completes and checks out (CRC), the
"silence" was the loop's own (so does another node's frame that completes:
its tail must not be read again as the start of a frame); if none does, ``framer.reset()`` marks the
boundary and the bytes are fed again after it. A false reset would cut a frame
in two; the framer's CRC hunt covers a missed boundary.
"""

import asyncio
import time

from protocols.modbus.slave import SlaveFramer, respond

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_BUF_SIZE = const(256)
_T35_FAST_US = const(1750)  # the spec fixes t3.5 above 19200 baud
_BITS_T35_X10 = const(385)  # 3.5 characters of 11 bits
_HANGUP_READS = const(50)  # consecutive empty reads that mean the line is gone
_EIO = const(5)
_PROMPT_US = const(5000)  # the answer time a master may count on


def silence_us(baud):
    """The 3.5-character inter-frame silence at ``baud``, in microseconds."""
    if baud > 19200:
        return _T35_FAST_US
    return (_BITS_T35_X10 * 100000 + baud - 1) // baud


class ModbusSlave:
    """Answers the requests for ``unit`` (and broadcasts) heard on ``port`` from ``bank``.

    ``port`` provides ``stream`` (an ``asyncio.StreamReader``: ``await
    stream.readinto(buf)`` returns what has arrived) and ``await send(buf, n)``,
    and may set ``silence_us`` to override the 3.5-character frame gap (a port
    whose bytes arrive with jitter needs a longer one); answers always wait
    the spec's t3.5 at ``baud`` (``answer_gap_us``). A stream that keeps
    reporting readable with nothing to read has hung up: OSError(EIO).
    ``beats`` counts loop iterations; ``turnaround_us`` / ``turnaround_max_us``
    measure from the read that completed a request to the end of the answer;
    reads (and exceptions) apart from writes, which may wait for flash:
    ``read_max_us`` and ``late_reads``, the reads answered after 5 ms.

    ``last_ms`` is the ``time.ticks_ms`` of the last request addressed to this
    unit (broadcasts excluded), which tells whether the gateway is present;
    ``requests`` counts those requests. The bank's ``broadcast`` attribute is
    set while a request is executed. ``after_answer``: a callable run once,
    after the answer to the current request has been sent (a unit change, a
    reboot).
    """

    def __init__(self, port, unit, bank, baud):
        self.port = port
        self.bank = bank
        self.framer = SlaveFramer(unit)
        self.silence_us = getattr(port, "silence_us", 0) or silence_us(baud)
        self.answer_gap_us = silence_us(baud) if baud else 0  # the spec's t3.5 before each answer
        self._rx = bytearray(_BUF_SIZE)
        self._rxv = memoryview(self._rx)
        self._out = bytearray(_BUF_SIZE)
        self.beats = 0
        self.answered = 0
        self.turnaround_us = 0
        self.turnaround_max_us = 0
        self.read_max_us = 0
        self.late_reads = 0
        self.last_ms = time.ticks_ms()
        self.requests = 0
        self.after_answer = None

    async def run(self):
        """Serve forever (returns only by an exception: the port failed)."""
        port = self.port
        stream = port.stream
        rx = self._rx
        empty = 0
        framer = self.framer
        bank = self.bank
        rxv = self._rxv
        out = self._out
        t35 = self.silence_us
        gap = self.answer_gap_us
        ticks_us = time.ticks_us
        ticks_diff = time.ticks_diff
        while True:
            waiting = ticks_us()
            n = await stream.readinto(rx)  # one small generator per read: the floor here
            arrived = ticks_us()
            if not n:
                empty += 1
                if empty >= _HANGUP_READS:
                    raise OSError(_EIO)
                await asyncio.sleep_ms(10)
                continue
            empty = 0
            # Only bytes held from before the wait can be cut off by a silence: without any, there is nothing to judge.
            silent = ticks_diff(arrived, waiting) >= t35 and framer.buffered() > 0
            found = framer.frames_ok + framer.frames_other
            framer.feed(rxv[:n])
            while True:
                req = framer.next_request()
                if req is None:
                    if silent and framer.frames_ok + framer.frames_other == found:
                        # The wait looked like a silence, but the loop may have been busy elsewhere while
                        # the bytes came in: a frame that joins across it and checks out (CRC), ours or
                        # another node's, was kept above. None did: the silence was real, and the bytes
                        # after it start afresh. (Feeding the tail of another node's frame again would
                        # leave it as garbage that can swallow the next request.)
                        silent = False
                        framer.reset()
                        framer.feed(rxv[:n])
                        continue
                    break
                unicast = req.unit != 0
                if unicast:
                    self.last_ms = time.ticks_ms()
                    self.requests += 1
                bank.broadcast = not unicast
                m = respond(req, bank, out)
                bank.broadcast = False
                if m:
                    # A port that knows when the request's last byte came (a lamp host's inbox) says so.
                    early = gap - ticks_diff(ticks_us(), getattr(stream, "arrived", arrived))
                    if early > 0:
                        # Under 2 ms: a blocking wait is exact where sleep_ms would round up a whole ms.
                        time.sleep_us(early)
                    await port.send(out, m)
                    self.answered += 1
                    took = ticks_diff(ticks_us(), arrived)
                    self.turnaround_us = took
                    self.turnaround_max_us = max(self.turnaround_max_us, took)
                    if req.values is None:  # no write behind it, so nothing waited for flash
                        self.read_max_us = max(self.read_max_us, took)
                        if took > _PROMPT_US:
                            self.late_reads += 1
                then = self.after_answer
                if then is not None:
                    self.after_answer = None
                    then()
            self.beats += 1
