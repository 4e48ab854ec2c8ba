"""Helpers for tests that drive meter and environment nodes on the virtual street (CPython only).

A synchronous pymodbus master on the street's pty, reads decoded through the
role's register map, and the files through which a test steers and observes
the virtual world (``control.json``, ``world.json``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pymodbus.client import ModbusSerialClient

from protocols.regmap import HOLDING, INPUT, RegisterMap
from protocols.roles import common
from tools.sim.street import VirtualStreet

T = TypeVar("T")
# The ESP32 budget is 128K on the 64-bit unix port: every role serves all its features there
# (docs/performance.md, "bench node").
HEAPSIZE = os.environ.get("STREETEDGE_NODE_HEAP", "128K")


def wait_for(probe: Callable[[], T | None], timeout: float = 15.0, what: str = "condition", every: float = 0.1) -> T:
    """Call ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Master:
    """A Modbus RTU master on the street's bus, reading through ``regmap``."""

    def __init__(self, street: VirtualStreet, regmap: RegisterMap) -> None:
        self.map = regmap
        self.client = ModbusSerialClient(street.master_device, baudrate=street.baud, timeout=1.0, retries=3)
        assert self.client.connect()

    def close(self) -> None:
        """Release the pty."""
        self.client.close()

    def inputs(self, unit: int) -> dict[str, int | float]:
        """The role's input registers 0..99 (raw), by name."""
        return self._read(unit, INPUT)

    def holding(self, unit: int) -> dict[str, int | float]:
        """The role's holding registers 0..99 (raw), by name."""
        return self._read(unit, HOLDING)

    def _read(self, unit: int, table: int) -> dict[str, int | float]:
        end = max(r.address + r.width for r in self.map.registers if r.table == table and r.address < 100)
        fn = self.client.read_input_registers if table == INPUT else self.client.read_holding_registers
        rr = fn(0, count=end, device_id=unit)
        assert not rr.isError(), rr
        return {reg.name: raw for reg, raw in self.map.decode(table, 0, rr.registers)}

    def write(self, unit: int, **values: int) -> Any:
        """Write raw values to holding registers by name, one request per register; the last response."""
        rr = None
        for name, raw in values.items():
            reg = self.map[name]
            rr = self.client.write_registers(reg.address, list(reg.words(raw)), device_id=unit)
            if rr.isError():
                return rr
        return rr

    def events(self, unit: int) -> list[tuple[int, int, int]]:
        """Every event the node still holds, as ``(seq, code, value)``, through the event window."""
        out: list[tuple[int, int, int]] = []
        start = 0
        while True:
            assert not self.write(unit, event_from=start).isError()
            first = self.map["event_next"].address
            count = common.EVENT_WINDOW_START + common.EVENT_WINDOW * common.EVENT_WORDS - first
            rr = self.client.read_input_registers(first, count=count, device_id=unit)
            assert not rr.isError(), rr
            words = rr.registers
            n = words[self.map["event_count"].address - first]
            for k in range(n):
                o = common.EVENT_WINDOW_START - first + k * common.EVENT_WORDS
                value = (words[o + 5] << 16) | words[o + 6]
                out.append(((words[o] << 16) | words[o + 1], words[o + 4], value - (1 << 32) if value >> 31 else value))
            if n < common.EVENT_WINDOW:
                return out
            start = out[-1][0] + 1

    def until(self, unit: int, ok: Callable[[dict[str, Any]], bool], timeout: float = 15.0,
              what: str = "inputs") -> dict[str, Any]:
        """Read the inputs until ``ok(values)``; fail after ``timeout`` seconds."""
        last: dict[str, Any] = {}

        def probe() -> dict[str, Any] | None:
            nonlocal last
            last = self.inputs(unit)
            return last if ok(last) else None

        try:
            return wait_for(probe, timeout, what, every=0.2)
        except AssertionError:
            raise AssertionError(f"unit {unit}: {what} not reached; last {last}") from None


def node_dir(street: VirtualStreet, unit: int) -> Path:
    """The node's flash folder."""
    return street.node(unit).flash


def control(street: VirtualStreet, unit: int, **settings: Any) -> None:
    """Steer the node's virtual world (``control.json``, read by the board within half a second)."""
    path = node_dir(street, unit) / "control.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(settings))
    tmp.replace(path)


def world(street: VirtualStreet, unit: int) -> dict[str, Any]:
    """The node's physical world (``world.json``), or {} while it is being replaced."""
    try:
        data: dict[str, Any] = json.loads((node_dir(street, unit) / "world.json").read_text())
    except (OSError, ValueError):
        return {}
    return data


def prepare(street: VirtualStreet, unit: int, config: dict[str, Any], ctl: dict[str, Any] | None = None) -> None:
    """Before the node's first start: its config.json (kept by the street) and its control.json."""
    folder = node_dir(street, unit)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    if ctl is not None:
        (folder / "control.json").write_text(json.dumps(ctl))
