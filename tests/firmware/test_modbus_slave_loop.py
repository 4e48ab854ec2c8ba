# common-subset
"""The node's slave loop on a scripted line: frames split across reads, with gaps that look like silences.

The loop cannot timestamp bytes, only reads, so a gap inside a frame (the
sender, a bus or the node's own loop held up) looks like the 3.5-character
silence that ends one. Whatever the chunking, every request for the node is
answered exactly once and every other node's frame is passed over whole:
nothing is dropped and nothing left behind to swallow the next request.
"""

import mp_env  # noqa: F401, I001 - first: ticks on CPython, asyncio on the path on MicroPython

import asyncio
import random

from firmware.modbus_slave import ModbusSlave
from protocols.modbus.crc import put_crc

UNIT = 3
BAUD = 19200
SILENT_MS = 3  # above t3.5 at 19200 bit/s (2.0 ms)


class LineEndedError(Exception):
    pass


class Line:
    """A stream that hands out scripted chunks, each after its gap (ms), then ends."""

    def __init__(self, chunks):
        self.chunks = chunks
        self.sent = []

    async def readinto(self, buf):
        if not self.chunks:
            raise LineEndedError()
        gap, data = self.chunks.pop(0)
        await asyncio.sleep(gap / 1000)
        buf[: len(data)] = data
        return len(data)


class Port:
    def __init__(self, line):
        self.stream = line

    async def send(self, buf, n):
        self.stream.sent.append(bytes(buf[:n]))


class Bank:
    """Holding registers 0..99: reads give the address, writes are kept."""

    def __init__(self):
        self.broadcast = False
        self.writes = []

    def read(self, fc, address, count, out):
        for k in range(count):
            out[k] = address + k

    def write(self, address, values, count):
        self.writes.append((address, list(values[:count])))


def _frame(body):
    out = bytearray(len(body) + 2)
    out[: len(body)] = body
    put_crc(out, len(body))
    return bytes(out)


def read_request(unit, address, count):
    return _frame(bytes([unit, 3, address >> 8, address & 0xFF, 0, count]))


def write_request(unit, address, value):
    return _frame(bytes([unit, 16, address >> 8, address & 0xFF, 0, 1, 2, value >> 8, value & 0xFF]))


def read_response(unit, words):
    body = bytearray([unit, 3, 2 * len(words)])
    for w in words:
        body.append(w >> 8)
        body.append(w & 0xFF)
    return _frame(body)


def serve(chunks):
    line = Line(chunks)
    bank = Bank()
    slave = ModbusSlave(Port(line), UNIT, bank, BAUD)

    async def main():
        try:  # noqa: SIM105 - no contextlib on MicroPython
            await slave.run()
        except LineEndedError:
            pass

    asyncio.run(main())
    return slave, line.sent, bank


def test_a_frame_for_another_node_split_by_a_silence_is_passed_over_whole():
    words = [0x0310 + k for k in range(10)]  # register values that read like a request for unit 3
    other = read_response(1, words)
    ours = read_request(UNIT, 0, 2)
    slave, sent, _ = serve([(SILENT_MS, read_request(1, 0, 10)), (SILENT_MS, other[:5]), (SILENT_MS, other[5:]),
                            (0, ours)])
    assert slave.framer.bytes_dropped == 0, slave.framer.bytes_dropped
    assert slave.framer.frames_other == 2, slave.framer.frames_other
    assert len(sent) == 1 and sent[0][:3] == bytes([UNIT, 3, 4]), sent


def test_every_request_answered_once_whatever_the_chunking():
    rnd = random.Random(20261206) if hasattr(random, "Random") else random
    if not hasattr(random, "Random"):
        random.seed(20261206)
    for case in range(40):
        frames = []
        expected = 0
        for _ in range(rnd.randint(3, 12)):
            unit = rnd.choice((1, 2, UNIT, 4))
            if rnd.randint(0, 1):
                req = read_request(unit, rnd.randint(0, 90), rnd.randint(1, 10))
                words = [rnd.randint(0, 0xFFFF) for _ in range(req[5])]
                frames.append(req)
                if unit != UNIT:
                    frames.append(read_response(unit, words))
            else:
                frames.append(write_request(unit, rnd.randint(0, 99), rnd.randint(0, 0xFFFF)))
                if unit != UNIT:
                    frames.append(_frame(bytes([unit, 16, 0, 1, 0, 1])))
            if unit == UNIT:
                expected += 1
        chunks = []
        for f in frames:
            cut = rnd.randint(1, len(f)) if rnd.randint(0, 2) == 0 else len(f)
            chunks.append((SILENT_MS, f[:cut]))
            if cut < len(f):
                # The rest after a pause that looks like a silence, or at once.
                chunks.append((rnd.choice((0, SILENT_MS)), f[cut:]))
        slave, sent, _ = serve(chunks)
        assert len(sent) == expected, (case, len(sent), expected)
        assert slave.framer.bytes_dropped == 0, (case, slave.framer.bytes_dropped)
