# common-subset
"""Fuzz the lamp's Modbus slave in process: random and mutated frames, every answer right or rightly refused.

The node's own pieces (``SlaveFramer``, ``respond``, the lamp's
``RegisterBank`` with its program and calendar blocks, the lamp ``Role`` on a
board of stubs) take the frames; an oracle written from the register table
says what each request deserves:

- a read inside the bank: exactly the bank's words; outside: exception 2;
  count outside 1..125: exception 3;
- a write: exception 2 or 3 where the table (whole writable registers,
  bounds; block words and their bounds) says so, and then nothing changed;
  where the table allows it, either the write is echoed and stored, or the
  lamp refuses it for a reason the table cannot see (an invalid program,
  photo_on above photo_off: exception 3; flash: 4), and then nothing changed;
- a read/write (23): the write's checks as for 16 (at most 121 words) and the read's as for
  03, both before anything is written; then the write as above, and after it the read,
  which answers the bank's words as they are after the write (exception 2 past the bank,
  the write kept);
- a function the node does not serve: exception 1; broadcasts and other units: silence;
- garbage: nothing, or a well-formed frame for this unit. Nothing ever raises.

``FUZZ_FRAMES`` (environment) sets the count: 1,000 by default, more under ``-m slow``.
"""

import os
from array import array
import random
import struct
from binascii import hexlify

import gc

import mp_env  # noqa: F401 - ticks on CPython

gc.collect()  # the role's module is the largest to compile from source: give it an unfragmented heap
from firmware.roles import lamp as role_module  # first, for the reason above

from firmware.registers import RegisterBank
from firmware.storage import Storage
from protocols.errors import ModbusException
from protocols.modbus.crc import crc16, crc_ok
from protocols.modbus.slave import SlaveFramer, respond
from protocols.roles import common
from protocols.roles import lamp as spec
from protocols.roles.kinds import HOLDING, RW

UNIT = 5
FRAMES = int(os.getenv("FUZZ_FRAMES") or 1000)
_COMMON = ("clock", "tz_offset", "clock_max_age", "event_from", "unit", "command")


class StubBoard:
    """The lamp's hardware as the role sees it: outputs taken, fixed readings."""

    def __init__(self, folder):
        self.flash_dir = folder

    def relay(self, on):
        pass

    def dimmer(self, percent):
        pass

    def read_meter(self):
        return 230.0, 0.1, 20.0

    def read_temperature(self):
        return 30.0


def _setup():
    folder = "/tmp/se-fuzz-%s" % hexlify(os.urandom(4)).decode()
    os.mkdir(folder)
    rows = spec.REGISTERS
    blocks = ((4, common.EVENT_WINDOW_START, common.EVENT_WINDOW * common.EVENT_WORDS),) + spec.BLOCKS  # noqa: RUF005
    bank = RegisterBank(rows, blocks=blocks, role="lamp", role_id=spec.ROLE_ID)
    store = Storage(folder + "/counters.json")
    role = role_module.Role(StubBoard(folder), bank, store)

    def on_write(names):
        for name in names:
            if name in _COMMON:
                return  # the node's business; accepted as stored
        role.on_write(names)

    bank.on_write = on_write
    role.start()
    return folder, bank, role


def _cleanup(folder):
    for name in os.listdir(folder):
        os.remove(folder + "/" + name)
    os.rmdir(folder)


def _rw_rows():
    out = {}
    for r in spec.REGISTERS:
        if r[1] == HOLDING and r[6] == RW:
            out[r[2]] = r
    return out


RW_ROWS = _rw_rows()
WIDE = (2, 3)  # U32, S32


def _signed(v, bits):
    return v - (1 << bits) if v & (1 << (bits - 1)) else v


def expected_write(address, values):
    """0 if the table allows the write, else the exception code it deserves."""
    count = len(values)
    for start, size in ((spec.PROGRAM_START, spec.PROGRAM_WORDS), (spec.CALENDAR_START, spec.CALENDAR_WORDS)):
        if start <= address < start + size:
            if address + count > start + size:
                return 2
            for i in range(count):
                lo, hi = spec.block_bounds(address + i)
                v = _signed(values[i], 16) if lo < 0 else values[i]
                if not lo <= v <= hi:
                    return 3
            return 0
    a = address
    while a < address + count:
        row = RW_ROWS.get(a)
        width = 2 if row is not None and row[3] in WIDE else 1
        if row is None or a + width > address + count:
            return 2
        k = a - address
        raw = values[k] if width == 1 else (values[k] << 16) | values[k + 1]
        if row[3] == 1:  # S16
            raw = _signed(raw, 16)
        elif row[3] == 3:  # S32
            raw = _signed(raw, 32)
        if not row[7] <= raw <= row[8]:
            return 3
        a += width
    return 0


def frame(unit, fc, body):
    f = bytearray([unit, fc]) + bytes(body)
    c = crc16(f)
    return bytes(f + bytes([c & 0xFF, c >> 8]))


def valid_write(rng):
    """A write the table allows: one writable register or a run of block words, within bounds."""
    if rng.randint(0, 2):
        row = RW_ROWS[rng.choice(list(RW_ROWS))]
        if row[0] == "command" or row[0] == "unit":
            row = RW_ROWS[0]  # never reboot or move the node under test
        raw = rng.randint(row[7], min(row[8], row[7] + 0xFFFF))
        words = [(raw >> 16) & 0xFFFF, raw & 0xFFFF] if row[3] in WIDE else [raw & 0xFFFF]
        address = row[2]
    else:
        start = rng.choice((spec.PROGRAM_START, spec.CALENDAR_START))
        size = spec.PROGRAM_WORDS if start == spec.PROGRAM_START else spec.CALENDAR_WORDS
        address = start + rng.randint(0, size - 1)
        words = []
        for a in range(address, min(address + rng.randint(1, 6), start + size)):
            lo, hi = spec.block_bounds(a)
            words.append(rng.randint(lo, hi) & 0xFFFF)
    body = struct.pack(">HHB", address, len(words), 2 * len(words)) + struct.pack(">%dH" % len(words), *words)
    if rng.randint(0, 2) == 0:  # the write with its read-back in one transaction (23)
        read = struct.pack(">HH", max(address - rng.randint(0, 2), 0), len(words) + rng.randint(0, 4))
        return frame(UNIT, 23, read + body), (UNIT, 23, address, len(words), words)
    return frame(UNIT, 16, body), (UNIT, 16, address, len(words), words)


def random_request(rng):
    """(frame bytes, request tuple) of a well-formed request, mostly for this unit."""
    if rng.randint(0, 3) == 0:
        return valid_write(rng)
    unit = rng.choice((UNIT, UNIT, UNIT, UNIT, 0, 7))
    fc = rng.choice((3, 4, 6, 16, 16, 16, 3, 4, 1, 5, 15, 2, 23, 23))
    hot = rng.choice((0, 1, 2, 7, 14, 15, 100, 104, 106, 107, 112, 118, 120, 175, 176, 199, 200, 201, 248, 250,
                      282, 283, 300))
    address = hot + rng.randint(-2, 2) if rng.randint(0, 3) else rng.randint(0, 0xFFFF)
    address = min(max(address, 0), 0xFFFF)
    if fc in (3, 4):
        count = rng.choice((1, 2, 7, 28, 64, 125, 0, 126, rng.randint(1, 125)))
        return frame(unit, fc, struct.pack(">HH", address, count)), (unit, fc, address, count, None)
    if fc == 6:
        value = rng.choice((0, 1, 2, 100, 101, 0xFFFF, 0x8000, rng.randint(0, 0xFFFF)))
        return frame(unit, fc, struct.pack(">HH", address, value)), (unit, fc, address, 1, [value])
    if fc in (16, 23):
        count = rng.choice((1, 2, 3, 5, 11, 33, 50, rng.randint(1, 123)))
        values = [rng.choice((0, 1, 2, 30, 100, 101, 1439, 1440, 0xFE98, 0xFFFF, rng.randint(0, 0xFFFF)))
                  for _ in range(count)]
        body = struct.pack(">HHB", address, count, 2 * count) + struct.pack(">%dH" % count, *values)
        if fc == 23:  # the read range first: near a hot spot or anywhere, counts out of range too
            read_count = rng.choice((1, 2, 3, 15, 125, 0, 126, rng.randint(1, 125)))
            read_address = min(hot + rng.randint(-2, 2), 0xFFFF) if rng.randint(0, 3) else rng.randint(0, 0xFFFF)
            body = struct.pack(">HH", max(read_address, 0), read_count) + body
        return frame(unit, fc, body), (unit, fc, address, count, values)
    body = struct.pack(">HH", address, rng.randint(0, 0xFFFF))
    if fc == 15:
        body += bytes([1, 0])
    return frame(unit, fc, body), (unit, fc, address, 0, None)


def mutate(rng, data):
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randint(0, 4)
        if op == 0 and b:
            b[rng.randrange(len(b))] ^= 1 << rng.randint(0, 7)
        elif op == 1 and b:
            i = rng.randrange(len(b))
            b = b[:i] + b[i + 1:]
        elif op == 2:
            i = rng.randint(0, len(b))
            b = b[:i] + bytes([rng.randint(0, 255)]) + b[i:]
        elif op == 3:
            b = b[:rng.randint(0, len(b))]
        else:
            b += bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 8)))
    if rng.randint(0, 1) and len(b) >= 4:  # a valid CRC on the mutant: it reaches respond()
        b = b[:-2]
        c = crc16(b)
        b += bytes([c & 0xFF, c >> 8])
    return bytes(b)


def check_answer(req, out, n, before, bank):
    """The node's answer (``out[:n]``) to parsed request ``req``, against the oracle."""
    unit, fc, address = req.unit, req.function, req.address
    if unit == 0:
        assert n == 0
        return
    assert n >= 5 and crc_ok(out, 0, n) and out[0] == unit
    if fc not in (3, 4, 6, 16, 23):
        assert (out[1], out[2]) == (fc | 0x80, 1)
        return
    if fc == 23:
        check_read_write(req, out, n, before, bank)
        return
    if fc in (3, 4):
        table = bank.holding if fc == 3 else bank.input
        if not 1 <= req.count <= 125:
            assert (out[1], out[2]) == (fc | 0x80, 3)
        elif address + req.count > len(table):
            assert (out[1], out[2]) == (fc | 0x80, 2)
        else:
            assert out[1] == fc and out[2] == 2 * req.count
            words = list(struct.unpack(">%dH" % req.count, bytes(out[3:3 + 2 * req.count])))
            assert words == list(table[address:address + req.count])
        return
    values = req.values
    if fc == 16 and (not 1 <= req.count <= 123 or req.byte_count != 2 * req.count):
        assert (out[1], out[2]) == (fc | 0x80, 3)
        assert _unchanged(bank.holding, before)
        return
    if address + len(values) > 0x10000:
        assert (out[1], out[2]) == (fc | 0x80, 2)
        return
    want = expected_write(address, values)
    if out[1] & 0x80:
        assert _unchanged(bank.holding, before), "a refused write changed the bank"
        if want:
            assert out[2] == want, (address, values, out[2], want)
        else:
            assert out[2] in (3, 4), (address, values, out[2])  # refused by the lamp itself
    else:
        assert want == 0, (address, values, want)
        assert out[1] == fc and n == 8


def check_read_write(req, out, n, before, bank):
    """The node's answer to a 23: both ranges checked first, then the write as for 16, then the read."""
    ra, rc = req.read_address, req.read_count
    refused = (out[1], out[2]) if out[1] & 0x80 else None
    if not (1 <= rc <= 125 and 1 <= req.count <= 121 and req.byte_count == 2 * req.count):
        assert refused == (0x97, 3) and _unchanged(bank.holding, before)
        return
    if ra + rc > 0x10000 or req.address + req.count > 0x10000:
        assert refused == (0x97, 2) and _unchanged(bank.holding, before)
        return
    want = expected_write(req.address, req.values)
    read_ok = ra + rc <= len(bank.holding)
    if want or (refused is not None and refused[1] != 2):
        assert refused is not None and _unchanged(bank.holding, before), "a refused write changed the bank"
        # The table's code, or 3/4 where the lamp itself refused what the table allows.
        assert refused[1] == want or (not want and refused[1] in (3, 4)), (req, refused, want)
    elif not read_ok:  # a good write, then a read past the bank: its exception, the write kept
        assert refused == (0x97, 2), (req, refused)
    else:  # the words of the bank as the write left them
        assert refused is None and out[1] == 23 and out[2] == 2 * rc and n == 5 + 2 * rc
        words = list(struct.unpack(">%dH" % rc, bytes(out[3:3 + 2 * rc])))
        assert words == list(bank.holding[ra:ra + rc])


def _unchanged(table, before):
    # Word by word: no copy of either table (see run_fuzz).
    return all(table[i] == before[i] for i in range(len(before)))


def run_fuzz(frames, seed):
    folder, bank, role = _setup()
    rng = random.Random(seed) if hasattr(random, "Random") else random
    if rng is random:
        random.seed(seed)
    framer = SlaveFramer(UNIT)
    out = bytearray(256)
    stats = {"answered": 0, "refused": 0, "silent": 0}
    # One copy of the holding table for the whole run: a fresh 4 KB list per request fragments a 128K
    # heap until a contiguous 4 KB no longer exists (a MemoryError that depends on the heap's layout).
    before = array("H", bank.holding)
    try:
        for k in range(frames):
            data, _ = random_request(rng)
            garbage = k % 3 == 2
            if garbage:
                data = mutate(rng, data)
            framer.reset()
            framer.feed(data)
            framer.reset()
            while True:
                req = framer.next_request()
                if req is None:
                    break
                before[:] = bank.holding  # in place: same type and length
                try:
                    n = respond(req, bank, out)
                except Exception as exc:  # the node must never raise
                    raise AssertionError("respond raised %r on %s" % (exc, hexlify(data))) from exc
                if n == 0:
                    stats["silent"] += 1
                elif out[1] & 0x80:
                    stats["refused"] += 1
                else:
                    stats["answered"] += 1
                check_answer(req, out, n, before, bank)
            if k % 50 == 0:
                role.sample(k * 1000)  # the role keeps sampling between requests
    finally:
        _cleanup(folder)
    return stats


def test_random_and_mutated_frames_get_right_answers_or_right_refusals():
    stats = run_fuzz(FRAMES, 1)
    assert stats["answered"] > FRAMES // 8 and stats["refused"] > FRAMES // 8
    assert stats["silent"] > 0


def test_the_oracle_knows_the_table():
    assert expected_write(0, [100]) == 0 and expected_write(0, [101]) == 3
    assert expected_write(7, [0xFAA2, 0xB580]) == 0  # latitude -90 degrees
    assert expected_write(8, [0]) == 2  # half of latitude
    assert expected_write(15, [0]) == 2  # the gap
    assert expected_write(201, [17]) == 3 and expected_write(203, [0xFE98]) == 0
    assert expected_write(249, [0, 0]) == 2  # across the program window's end
    try:
        raise ModbusException(16, 3)
    except ModbusException as exc:
        assert exc.code == 3
