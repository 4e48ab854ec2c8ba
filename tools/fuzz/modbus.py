"""Mutation fuzz of protocols.modbus: the slave framer stays in step and never answers wrongly.

    python -m tools.fuzz.modbus --cases 20000 --seed 1

One node (unit 17) listens to a simulated multi-drop bus carrying
requests for it (03, 04, 06, 16, 23 and unsupported functions), for other units
and for broadcast, other slaves' responses,
garbage, and mutated copies of all of these (bits flipped, bytes replaced,
inserted or deleted, truncated, spliced), fed in uneven chunks; the adapter
usually reports the silence after a transmission and sometimes misses it. The
intact frames are built by pymodbus, independently of the code under test.
Checked: ``feed``/``reset``/``next_request``/``respond`` never raise; every
intact request for the node with a silence before and after it is returned,
exactly; every other request returned is a CRC-valid frame for the node that
really is in the recent bytes; ``respond`` writes a CRC-valid frame that
pymodbus reads back consistently.

Prints a summary and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import traceback
from typing import Any

from pymodbus.framer.rtu import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu import register_message as rm

from protocols.errors import ModbusException
from protocols.modbus.crc import crc16
from protocols.modbus.pdu import Request
from protocols.modbus.rtu import request_length
from protocols.modbus.slave import SlaveFramer, respond

UNIT = 17
_CLIENT = FramerRTU(DecodePDU(False))  # builds requests
_SERVER = FramerRTU(DecodePDU(True))  # builds responses
_RESPONSES = DecodePDU(False)  # reads responses
_UNSUPPORTED = (1, 2, 5, 7, 8, 11, 12, 15, 17, 20, 21, 22, 24, 43)
_ANSWERED = (3, 4, 6, 16, 23)

Key = tuple[Any, ...]


def _with_crc(body: bytes) -> bytes:
    crc = crc16(body)
    return body + bytes((crc & 0xFF, crc >> 8))


def _crc_valid(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame, 0, len(frame) - 2) == frame[-2] | frame[-1] << 8


def _mutate(rnd: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """A copy of data with one random mutation; never equal to data."""
    for _ in range(10):
        out = bytearray(data)
        kind = rnd.randrange(7)
        if kind == 0 and out:
            for _ in range(rnd.randrange(1, 4)):
                out[rnd.randrange(len(out))] ^= 1 << rnd.randrange(8)
        elif kind == 1 and out:
            out[rnd.randrange(len(out))] = rnd.randrange(256)
        elif kind == 2:
            out.insert(rnd.randrange(len(out) + 1), rnd.randrange(256))
        elif kind == 3 and out:
            del out[rnd.randrange(len(out))]
        elif kind == 4 and out:
            del out[rnd.randrange(len(out)) :]
        elif kind == 5:
            other = rnd.choice(pool)
            out = out[: rnd.randrange(len(out) + 1)] + other[rnd.randrange(len(other) + 1) :]
        else:
            out += rnd.randbytes(rnd.randrange(1, 4))
        if bytes(out) != data:
            return bytes(out)
    return data + b"\x00"


# --- slave ---------------------------------------------------------------------


def _request(rnd: random.Random, unit: int) -> tuple[bytes, Key]:
    """A pymodbus-built request for unit, and the Request fields it must decode to."""
    kind = rnd.randrange(11)
    address = rnd.randrange(0x10000)
    if kind == 10:  # 23: write, then read (ranges past 65535 included: respond() refuses them)
        values = [rnd.randrange(0x10000) for _ in range(rnd.randrange(1, 122))]
        read_address, read_count = rnd.randrange(0x10000), rnd.randrange(1, 126)
        frame = _CLIENT.buildFrame(rm.ReadWriteMultipleRegistersRequest(
            dev_id=unit, read_address=read_address, read_count=read_count, write_address=address,
            write_registers=values))
        return frame, (unit, 23, address, len(values), tuple(values), 2 * len(values), read_address, read_count)
    if kind < 4:
        count = rnd.randrange(1, 126)
        cls = rm.ReadHoldingRegistersRequest if kind < 2 else rm.ReadInputRegistersRequest
        frame = _CLIENT.buildFrame(cls(dev_id=unit, address=address, count=count))
        return frame, (unit, frame[1], address, count, None, 0, 0, 0)
    if kind < 6:
        value = rnd.randrange(0x10000)
        frame = _CLIENT.buildFrame(
            rm.WriteSingleRegisterRequest(dev_id=unit, address=address, registers=[value])
        )
        return frame, (unit, 6, address, 1, (value,), 0, 0, 0)
    if kind < 8:
        values = [rnd.randrange(0x10000) for _ in range(rnd.randrange(1, 124))]
        frame = _CLIENT.buildFrame(
            rm.WriteMultipleRegistersRequest(dev_id=unit, address=address, registers=values)
        )
        return frame, (unit, 16, address, len(values), tuple(values), 2 * len(values), 0, 0)
    if kind == 8:  # counts out of range: the framer returns them, respond() refuses them
        count = rnd.choice((0, 126, 0xFFFF))
        fc = rnd.choice((3, 4))
        frame = _with_crc(bytes((unit, fc)) + address.to_bytes(2, "big") + count.to_bytes(2, "big"))
        return frame, (unit, fc, address, count, None, 0, 0, 0)
    fc = rnd.choice(_UNSUPPORTED)
    body = {1: 4, 2: 4, 5: 4, 8: 4, 22: 6, 24: 2, 43: 3}.get(fc)
    if body is not None:
        frame = _with_crc(bytes((unit, fc)) + rnd.randbytes(body))
    elif fc == 15:
        n = rnd.randrange(0, 20)
        head = rnd.randbytes(4)
        frame = _with_crc(bytes((unit, fc)) + head + bytes((n,)) + rnd.randbytes(n))
    elif fc in (20, 21):
        n = rnd.randrange(0, 20)
        frame = _with_crc(bytes((unit, fc, n)) + rnd.randbytes(n))
    else:  # 7, 11, 12, 17: no data
        frame = _with_crc(bytes((unit, fc)))
    return frame, (unit, fc, 0, 0, None, 0, 0, 0)


def _response(rnd: random.Random, unit: int) -> bytes:
    """A pymodbus-built response of a slave with this unit."""
    kind = rnd.randrange(4)
    address = rnd.randrange(0x10000)
    if kind == 0:
        values = [rnd.randrange(0x10000) for _ in range(rnd.randrange(1, 126))]
        cls = rnd.choice((rm.ReadHoldingRegistersResponse, rm.ReadInputRegistersResponse,
                          rm.ReadWriteMultipleRegistersResponse))
        return bytes(_SERVER.buildFrame(cls(dev_id=unit, registers=values)))
    if kind == 1:
        single = rm.WriteSingleRegisterResponse(
            dev_id=unit, address=address, registers=[rnd.randrange(0x10000)]
        )
        return bytes(_SERVER.buildFrame(single))
    if kind == 2:
        multiple = rm.WriteMultipleRegistersResponse(
            dev_id=unit, address=address, count=rnd.randrange(1, 124)
        )
        return bytes(_SERVER.buildFrame(multiple))
    fc = rnd.choice(_ANSWERED)
    return bytes(_SERVER.buildFrame(ExceptionResponse(fc, rnd.randrange(1, 5), device_id=unit)))


def _key(req: Request) -> Key:
    values = None if req.values is None else tuple(req.values)
    return (req.unit, req.function, req.address, req.count, values, req.byte_count, req.read_address,
            req.read_count)


def _decode_request(frame: bytes) -> Key | None:
    """Independent decoding of a CRC-valid request frame for the fuzz's own checks."""
    unit, fc = frame[0], frame[1]
    def word(k: int) -> int:
        return frame[k] << 8 | frame[k + 1]

    if fc in (3, 4) and len(frame) == 8:
        return (unit, fc, word(2), word(4), None, 0, 0, 0)
    if fc == 6 and len(frame) == 8:
        return (unit, 6, word(2), 1, (word(4),), 0, 0, 0)
    if fc == 16 and len(frame) >= 9 and len(frame) == 9 + frame[6]:
        values = tuple(word(7 + 2 * i) for i in range(frame[6] // 2))
        return (unit, 16, word(2), word(4), values, frame[6], 0, 0)
    if fc == 23 and len(frame) >= 13 and len(frame) == 13 + frame[10]:
        values = tuple(word(11 + 2 * i) for i in range(frame[10] // 2))
        return (unit, 23, word(6), word(8), values, frame[10], word(2), word(4))
    if fc in _ANSWERED:
        return None
    return (unit, fc, 0, 0, None, 0, 0, 0)


def _in_window(key: Key, window: bytes) -> bool:
    # Some CRC-valid frame in the recent bytes decodes to exactly this request.
    for start in range(len(window) - 3):
        if window[start] != key[0] or window[start + 1] != key[1]:
            continue
        size = request_length(window, start, len(window) - start)
        frame = window[start : start + size]
        if size < 4 or len(frame) != size or not _crc_valid(frame):
            continue
        if _decode_request(frame) == key:
            return True
    return False


class _FuzzBank:
    """A bank that answers, refuses, fails or misbehaves at random."""

    def __init__(self, rnd: random.Random) -> None:
        self.rnd = rnd
        self.calls: list[Key] = []  # ("write" or "refused", address, count), ("read", function, address, count)

    def read(self, function: int, address: int, count: int, values_out: Any) -> None:
        self.calls.append(("read", function, address, count))
        roll = self.rnd.randrange(20)
        if roll == 0:
            raise ModbusException(function, self.rnd.choice((2, 3, 4, 6, 0, 300)))
        if roll == 1:
            raise RuntimeError("sensor gone")
        for i in range(count):
            values_out[i] = self.rnd.randrange(0x10000)

    def write(self, address: int, values: Any, count: int) -> None:
        roll = self.rnd.randrange(20)
        if roll < 2:
            self.calls.append(("refused", address, count))
            raise ModbusException(16, self.rnd.choice((2, 3))) if roll == 0 else OSError("flash full")
        for i in range(count):
            assert 0 <= values[i] <= 0xFFFF
        self.calls.append(("write", address, count))


def _check_response(req: Request, out: bytearray, n: int) -> None:
    if req.broadcast:
        assert n == 0, "answered a broadcast"
        return
    frame = bytes(out[:n])
    assert n >= 5 and _crc_valid(frame), f"bad response frame {frame.hex()}"
    assert frame[0] == req.unit
    fc = req.function
    if frame[1] == fc | 0x80:
        assert n == 5 and 1 <= frame[2] <= 255
        if fc not in _ANSWERED:
            assert frame[2] == 1, "unsupported function not answered 01"
        return
    assert frame[1] == fc and fc in _ANSWERED, f"answered {fc} with {frame.hex()}"
    answer = _RESPONSES.decode(frame[1:-2])  # pymodbus reads the answer, independently of the code under test
    assert answer is not None and answer.function_code == fc, f"pymodbus cannot read {frame.hex()}"
    if fc in (3, 4):
        assert len(answer.registers) == req.count
    elif fc == 23:  # the read's words, and only after a write of the whole range passed the checks
        assert len(answer.registers) == req.read_count
        assert 1 <= req.count <= 121 and req.address + req.count <= 0x10000
        assert req.read_address + req.read_count <= 0x10000
    elif fc == 6:
        assert (answer.address, answer.registers[0]) == (req.address, req.values[0])
    else:
        assert (answer.address, answer.count) == (req.address, req.count)


def fuzz_slave(n: int, seed: int = 0) -> dict[str, Any]:
    """Run n bus transmissions past one SlaveFramer; return counters and failures."""
    rnd = random.Random(seed)
    framer = SlaveFramer(UNIT)
    bank = _FuzzBank(rnd)
    out = bytearray(256)
    pool = [_request(rnd, UNIT)[0] for _ in range(20)] + [_response(rnd, 5) for _ in range(20)]
    stats: dict[str, Any] = {"transmissions": 0, "intact": 0, "returned": 0, "extra": 0}
    stats["bytes"] = 0
    failures: list[str] = []
    window = b""
    silence_before = True
    for i in range(n):
        kind = rnd.randrange(10)
        key: Key | None = None
        if kind < 3:
            frame, key = _request(rnd, UNIT)
        elif kind == 3:
            frame, key = _request(rnd, 0)
        elif kind < 6:
            frame, _ = _request(rnd, rnd.choice((1, 5, 16, 18, 200, 247)))
        elif kind < 8:
            frame = _response(rnd, rnd.choice((1, 5, 16, 18, UNIT)))
        else:
            frame = rnd.randbytes(rnd.randrange(1, 40))
        if rnd.randrange(3) == 0:
            frame = _mutate(rnd, frame, pool)
            key = None
        silence_after = rnd.random() < 0.9
        expected = key if (silence_before and silence_after) else None
        returned: list[Key] = []
        try:
            pos = 0
            while pos < len(frame):
                step = rnd.randrange(1, 17)
                framer.feed(frame[pos : pos + step])
                window = (window + frame[pos : pos + step])[-600:]
                pos += step
                returned += _drain(framer, bank, out)
            if silence_after:
                framer.reset()
                returned += _drain(framer, bank, out)
        except Exception:  # a fuzzer records every crash
            failures.append(f"crash on transmission {i} {frame.hex()}:\n{traceback.format_exc()}")
            framer = SlaveFramer(UNIT)
            continue
        stats["transmissions"] += 1
        stats["bytes"] += len(frame)
        stats["returned"] += len(returned)
        if expected is not None:
            stats["intact"] += 1
            if expected in returned:
                returned.remove(expected)
            else:
                failures.append(f"missed intact request {frame.hex()} (got {returned})")
        for got in returned:
            stats["extra"] += 1
            if got[0] not in (UNIT, 0) or not _in_window(got, window):
                failures.append(f"wrong answer {got} after {frame.hex()}")
        silence_before = silence_after
    stats["frames_ok"] = framer.frames_ok
    stats["crc_errors"] = framer.crc_errors
    stats["bytes_dropped"] = framer.bytes_dropped
    stats["failures"] = failures
    return stats


def _drain(framer: SlaveFramer, bank: _FuzzBank, out: bytearray) -> list[Key]:
    keys: list[Key] = []
    while True:
        req = framer.next_request()
        if req is None:
            return keys
        bank.calls.clear()
        n = respond(req, bank, out)
        _check_response(req, out, n)
        # 23: nothing for broadcast or failed checks; the write first, then the read; no read after a refusal.
        if req.function == 23:
            write = (req.address, req.count)
            allowed = [[]] if req.broadcast else [
                [], [("refused", *write)], [("write", *write), ("read", 3, req.read_address, req.read_count)]]
            assert bank.calls in allowed, f"23 called the bank {bank.calls} for {req}"
        keys.append(_key(req))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20_000, help="transmissions")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    failed = 0
    for name, fn in (("slave", fuzz_slave),):
        t0 = time.perf_counter()
        stats = fn(args.cases, args.seed)
        elapsed = time.perf_counter() - t0
        failures = stats.pop("failures")
        failed += len(failures)
        for line in failures[:5]:
            print(line, file=sys.stderr)
        summary = ", ".join(f"{k} {v}" for k, v in stats.items())
        print(f"{name}: {summary}, {len(failures)} failures, {elapsed:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
