"""Helpers for tests that drive lamp nodes on the virtual street: registers by name, events, the virtual clock.

Builds on ``street_kit`` (a synchronous pymodbus master, ``control.json`` and
``world.json``). Everything goes through the lamp's register map
(``protocols.roles.lamp``), the common registers and the event window
protocol of ``protocols.roles.common``.
"""

from __future__ import annotations

import calendar
import os
import struct
from typing import Any

from street_kit import Master, wait_for

from protocols.regmap import INPUT
from protocols.roles import common
from protocols.roles import lamp as spec

MAP = spec.MAP
EV_WINDOW = common.EVENT_WINDOW_START
# The ESP32 budget on the 64-bit unix port: a lamp serves all its features there (docs/performance.md,
# "bench node").
HEAPSIZE = os.environ.get("STREETEDGE_LAMP_HEAP", "128K")


def epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    """Unix seconds of a UTC date and time."""
    return calendar.timegm((year, month, day, hour, minute, 0, 0, 0, 0))


class Lamp:
    """One lamp node seen from a Modbus master: ``unit`` on ``master``'s bus."""

    def __init__(self, master: Master, unit: int) -> None:
        self.m = master
        self.c = master.client
        self.unit = unit

    def read(self, table: int, start: int, count: int) -> list[int]:
        """Raw words (asserts an answer)."""
        fn = self.c.read_input_registers if table == INPUT else self.c.read_holding_registers
        rr = fn(start, count=count, device_id=self.unit)
        assert not rr.isError(), rr
        return list(rr.registers)

    def values(self, table: int = INPUT) -> dict[str, int]:
        """Every register of the table (role and common), raw, by name."""
        out: dict[str, int] = {}
        for start, count in MAP.blocks(table):
            words = self.read(table, start, count)
            out.update({reg.name: int(raw) for reg, raw in MAP.decode(table, start, words)})
        return out

    def get(self, name: str) -> int:
        """One register, raw."""
        reg = MAP[name]
        return int(reg.from_words(self.read(reg.table, reg.address, reg.width)))

    def write(self, **values: int) -> Any:
        """Write registers by name (raw), one request each; the first error or the last answer."""
        rr = None
        for name, raw in values.items():
            reg = MAP[name]
            rr = self.c.write_registers(reg.address, list(reg.words(raw)), device_id=self.unit)
            if rr.isError():
                return rr
        return rr

    def write_words(self, address: int, words: list[int]) -> Any:
        """Write raw holding words (blocks)."""
        return self.c.write_registers(address, [w & 0xFFFF for w in words], device_id=self.unit)

    def program(self, pid: int, points: list[tuple[int, int, int]]) -> Any:
        """Store program ``pid`` through the program window (one request)."""
        words = [pid, len(points)]
        for kind, offset, level in points:
            words += [kind, offset & 0xFFFF, level]
        return self.write_words(spec.PROGRAM_START, words)

    def calendar(self, default: int, rules: list[tuple[int, int, int, int]] = ()) -> Any:
        """Store the calendar (default program, rules as (program, days, from, to))."""
        words = [default]
        for rule in rules:
            words += list(rule)
        words += [0] * (spec.CALENDAR_WORDS - len(words))
        return self.write_words(spec.CALENDAR_START, words)

    def until(self, ok: Any, timeout: float = 15.0, what: str = "inputs") -> dict[str, int]:
        """Read all inputs until ``ok(values)``."""
        last: dict[str, int] = {}

        def probe() -> dict[str, int] | None:
            nonlocal last
            last = self.values(INPUT)
            return last if ok(last) else None

        try:
            return wait_for(probe, timeout, what, every=0.2)
        except AssertionError:
            raise AssertionError(f"unit {self.unit}: {what} not reached; last {last}") from None

    def events(self, from_seq: int = 0) -> tuple[list[tuple[int, int, int, int]], dict[str, int]]:
        """Catch up from ``from_seq`` with the window protocol; the events and the last header read."""
        out: list[tuple[int, int, int, int]] = []
        seq = from_seq
        start = MAP["event_next"].address
        while True:
            rr = self.write(event_from=seq)
            assert not rr.isError(), rr
            words = self.read(INPUT, start, EV_WINDOW - start + common.EVENT_WINDOW * common.EVENT_WORDS)
            header = {reg.name: int(raw) for reg, raw in MAP.decode(INPUT, start, words)}
            n = header["event_count"]
            base = EV_WINDOW - start
            for k in range(n):
                w = words[base + 7 * k:base + 7 * k + 7]
                out.append(struct.unpack(">IIHi", struct.pack(">7H", *w)))
            if n == 0 or out[-1][0] + 1 >= header["event_next"]:
                return out, header
            seq = out[-1][0] + 1


