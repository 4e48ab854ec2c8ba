"""The node: configuration, register bank, role, Modbus slave and housekeeping on one event loop.

``run(board)`` never returns while the node is healthy. Tasks:

- the Modbus slave (answers the bus);
- the sampler: ``role.sample()`` every ``sample_ms``, then heap bookkeeping
  and ``gc.collect()``, then the watchdog feed (a stuck loop stops the feeds);
- diagnostics: ``./diag.json`` every 10 s (``heap_peak``: the largest
  ``gc.mem_alloc()`` seen just before a collection, i.e. live data plus one
  sample period's garbage; ``heap_free``/``heap_live`` after the last
  collection; Modbus counters; turnaround times; uptime);
- whatever the board needs (``board.tasks()``).

When the slave is listening it prints ``streetedge node ready unit=N role=R``.
"""

import asyncio
import gc
import json
import os
import time

from firmware import config, roles
from firmware.modbus_slave import ModbusSlave
from firmware.registers import RegisterBank
from firmware.storage import Storage

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_DIAG_FIRST_MS = const(2000)
_DIAG_PERIOD_MS = const(10000)
_WATCHDOG_MS = const(10000)


class Node:
    """Everything one node runs, built from its board."""

    def __init__(self, board):
        self.board = board
        self._dir = board.flash_dir
        self.config = config.load(self._path("config.json"))
        role_module = roles.load(self.config.role)
        self.bank = RegisterBank(role_module.MAP)
        self.store = Storage(self._path("counters.json"))
        self.role = role_module.Role(board, self.bank, self.store, self.config.safe_mode)
        self.bank.on_write = self.role.on_write
        self.slave = None
        self.heap_peak = 0
        self.heap_live = 0
        self._boot_ms = time.ticks_ms()

    def _path(self, name):
        return self._dir + "/" + name

    async def main(self):
        """Start every task; return (raise) only when one of them fails."""
        cfg = self.config
        if cfg.safe_mode:
            print("streetedge SAFE MODE:", cfg.problem)
        port = self.board.open_rs485(cfg.baud)
        self.slave = ModbusSlave(port, cfg.unit, self.bank, cfg.baud)
        self.role.start()
        self.role.sample(time.ticks_ms())  # registers are meaningful before the first request
        tasks = [self.slave.run(), self._sampler(), self._diagnostics()]
        tasks.extend(self.board.tasks())
        running = [asyncio.create_task(t) for t in tasks]
        gc.collect()  # boot garbage (imports) is not the steady state that heap_peak tracks
        print("streetedge node ready unit=%d role=%s" % (cfg.unit, cfg.role))
        await asyncio.gather(*running)

    async def _sampler(self):
        period = self.config.sample_ms
        wdt = self.board.watchdog(_WATCHDOG_MS)
        due = time.ticks_add(time.ticks_ms(), period)
        while True:
            delay = time.ticks_diff(due, time.ticks_ms())
            if delay > 0:
                await asyncio.sleep_ms(delay)
            now = time.ticks_ms()
            if time.ticks_diff(now, due) > period:
                due = now  # fell behind (a long stall): do not try to catch up
            due = time.ticks_add(due, period)
            self.role.sample(now)
            alloc = gc.mem_alloc()
            self.heap_peak = max(self.heap_peak, alloc)
            gc.collect()
            self.heap_live = gc.mem_alloc()
            wdt.feed()

    async def _diagnostics(self):
        await asyncio.sleep_ms(_DIAG_FIRST_MS)
        while True:
            self.write_diagnostics()
            await asyncio.sleep_ms(_DIAG_PERIOD_MS)

    def write_diagnostics(self):
        """Write ./diag.json (atomically)."""
        slave = self.slave
        framer = slave.framer
        d = {
            "heap_peak": self.heap_peak,
            "heap_live": self.heap_live,
            "heap_free": gc.mem_free(),
            "frames_ok": framer.frames_ok,
            "frames_other": framer.frames_other,
            "crc_errors": framer.crc_errors,
            "bytes_dropped": framer.bytes_dropped,
            "answered": slave.answered,
            "turnaround_us": slave.turnaround_us,
            "turnaround_max_us": slave.turnaround_max_us,
            "saves": self.store.saves,
            "uptime": time.ticks_diff(time.ticks_ms(), self._boot_ms) // 1000,
            "safe_mode": self.config.safe_mode,
        }
        tmp = self._path("diag.json.tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(d, f)
            os.rename(tmp, self._path("diag.json"))
        except OSError:
            pass  # diagnostics are best effort


def run(board):
    """Run the node on ``board`` until a task fails (the caller resets the board)."""
    asyncio.run(Node(board).main())
