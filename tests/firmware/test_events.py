# common-subset
"""The event log: numbering across reboots, the ring, the register window, retiming, persistence."""

import os
import struct

import mp_env  # noqa: F401 - ticks on CPython
from scratch import remove_scratch, scratch_path

from firmware.events import RECORD, EventLog


class FakeClock:
    def __init__(self, epoch=None, up=0):
        self.e = epoch
        self.up = up

    def epoch(self):
        return self.e

    def uptime_s(self):
        return self.up


def test_seqs_grow_and_never_repeat_across_reboots():
    path = scratch_path("events", "bin")
    try:
        log = EventLog(path, FakeClock(1700000000), capacity=16, block=4)
        seqs = [log.log(10 + k, k) for k in range(6)]
        assert seqs == [0, 1, 2, 3, 4, 5]
        assert log.reserved == 8  # reserved in blocks of 4 before use
        # A power cut before any flush of the last events: the next boot starts at the reservation.
        log2 = EventLog(path, FakeClock(1700000000), capacity=16, block=4)
        assert log2.next_seq == 8 and log2.boot_seq == 8
        assert log2.log(99) == 8
        held = [e[0] for e in _events(log2)]
        assert held == sorted(set(held)) and held[-1] == 8 and max(held[:-1]) < 8
    finally:
        remove_scratch(path)


def _events(log, from_seq=0):
    words = [0] * (7 * log.capacity)
    n = log.fill(words, 0, from_seq, log.capacity)
    out = []
    for k in range(n):
        out.append(struct.unpack(">IIHi", struct.pack(">7H", *words[7 * k:7 * k + 7])))
    return out


def test_a_full_ring_drops_the_oldest_and_counts_only_unacknowledged_losses():
    path = scratch_path("events", "bin")
    try:
        log = EventLog(path, FakeClock(1700000000), capacity=8, block=100)
        for k in range(12):
            log.log(20, k)
        assert log.count == 8 and log.oldest() == 4 and log.lost == 4
        log.acknowledge(10)  # the master has everything below 10
        for k in range(4):
            log.log(21, k)  # overwrites 4..7 (below 10: not lost)
        assert log.lost == 4 and log.oldest() == 8
        log.log(22)  # overwrites 8 (< 10): still not lost
        log.log(23)  # overwrites 9
        log.log(24)  # overwrites 10: lost
        assert log.lost == 5
    finally:
        remove_scratch(path)


def test_the_window_starts_at_the_first_seq_at_or_after_from_and_pads_with_zeros():
    path = scratch_path("events", "bin")
    try:
        log = EventLog(path, FakeClock(1700000000), capacity=16, block=100)
        for k in range(5):
            log.log(30 + k, -k)
        words = [0xFFFF] * 28
        n = log.fill(words, 0, 2, 4)
        assert n == 3
        got = [struct.unpack(">IIHi", struct.pack(">7H", *words[7 * k:7 * k + 7])) for k in range(3)]
        assert got == [(2, 1700000000, 32, -2), (3, 1700000000, 33, -3), (4, 1700000000, 34, -4)]
        assert words[21:] == [0] * 7
        assert log.fill(words, 0, 5, 4) == 0 and words == [0] * 28
        assert log.fill(words, 0, 0, 2) == 2  # a full window: read again from the last seq + 1
    finally:
        remove_scratch(path)


def test_values_are_clamped_to_s32():
    path = scratch_path("events", "bin")
    try:
        log = EventLog(path, FakeClock(1700000000), capacity=4, block=100)
        log.log(1, 1 << 40)
        log.log(1, -(1 << 40))
        assert [e[3] for e in _events(log)] == [0x7FFFFFFF, -0x80000000]
    finally:
        remove_scratch(path)


def test_events_before_the_clock_carry_uptime_and_are_retimed_when_it_is_set():
    path = scratch_path("events", "bin")
    try:
        clock = FakeClock(None, up=5)
        log = EventLog(path, clock, capacity=8, block=100)
        log.log(1)
        clock.up = 9
        log.log(2)
        assert [e[1] for e in _events(log)] == [5, 9]
        log.retime(1700000000 - 10)  # the clock was set at uptime 10 to 1700000000
        assert [e[1] for e in _events(log)] == [1699999995, 1699999999]
        log.retime(1000)  # epoch times are never shifted again
        assert [e[1] for e in _events(log)] == [1699999995, 1699999999]
    finally:
        remove_scratch(path)


def test_the_log_survives_a_reboot_and_a_damaged_file_flags_an_error():
    path = scratch_path("events", "bin")
    try:
        log = EventLog(path, FakeClock(1700000000), capacity=8, block=2)
        for k in range(5):
            log.log(40, k)
        assert log.flush()
        again = EventLog(path, FakeClock(1700000000), capacity=8, block=2)
        assert _events(again) == _events(log) and not again.error
        with open(path, "r+b") as f:
            f.seek(24)
            f.write(b"\xff")  # a flipped byte: the CRC catches it
        damaged = EventLog(path, FakeClock(1700000000), capacity=8, block=2)
        assert damaged.error and damaged.count == 0
        os.rename(path, path + ".tmp")  # FAT cut between remove and rename: the complete .tmp copy
        log.flush()
        os.rename(path, path + ".tmp")
        fallback = EventLog(path, FakeClock(1700000000), capacity=8, block=2)
        assert _events(fallback) == _events(log)
    finally:
        remove_scratch(path)


def test_a_burst_is_saved_once_after_flush_ms():
    path = scratch_path("events", "bin")
    try:
        log = EventLog(path, FakeClock(1700000000), capacity=8, block=100, flush_ms=1000)
        log.log(1)  # the first event reserves: one write
        saves = log.saves
        for k in range(5):
            log.log(2, k)
        log.tick(log._dirty_since + 999)
        assert log.saves == saves
        log.tick(log._dirty_since + 1000)
        assert log.saves == saves + 1
        log.tick(log._dirty_since or 0)  # nothing new: no write
        assert log.saves == saves + 1
    finally:
        remove_scratch(path)


def test_record_size_is_seven_register_words():
    assert RECORD == 14 == 2 * 7
