"""The node: configuration, register bank, role, Modbus slave and housekeeping on one event loop.

``run(board)`` never returns while the node is healthy. Tasks:

- the Modbus slave (answers the bus);
- the sampler: ``role.sample()`` every ``sample_ms``, then the registers
  every node has (``protocols.roles.common``: clock, boot record, event log
  window), heap bookkeeping and ``gc.collect()``, then the watchdog feed (the
  watchdog starts before anything else and is never stopped; a stuck loop
  stops the feeds);
- diagnostics: ``./diag.json`` every 10 s (``heap_peak``: the largest
  ``gc.mem_alloc()`` right after a collection, the sampler's and those a role
  makes while it holds its rare code (the lamp's settings writes and night
  plans): the most the node needed at once; ``heap_live``/``heap_free`` after
  the last collection; ``heap_gc_peak``: the largest ``gc.mem_alloc()`` seen
  just before the sampler's collection, i.e. with one sample period's
  garbage, at most the heap; Modbus counters; turnaround times; uptime);
- whatever the board needs (``board.tasks()``).

When the slave is listening it prints ``streetedge node ready unit=N role=R``.

What the node keeps for every role: the clock (:mod:`firmware.events`, set by
a write of ``clock``), the event log (:mod:`firmware.events`, ``events.bin``),
the boot record and crash-loop safe mode (:mod:`firmware.storage`,
``boot.json``), ``tz_offset`` and ``clock_max_age`` (``node.json``, written
when a master changes them). A role object gets ``events``, ``clock`` and
``node`` set if it has attributes of those names. In crash-loop safe mode the
role is not built: ``safe_state(board, bank)`` of the role module (if any) puts
the outputs in their safe state, writes to the role's registers are refused
(exception 4), the common registers work.
"""

import asyncio
import gc
import time

from firmware.lazy import release
from firmware.storage import atomic_write
from protocols.errors import ModbusException
from protocols.roles.common import (  # copies: the table itself leaves RAM after the boot (lamp)
    BOOT_POWER_ON,
    CMD_APPLY_UNIT,
    CMD_LEAVE_SAFE_MODE,
    CMD_NONE,
    CMD_REBOOT,
    EV_BOOT,
    EV_CLOCK_SET,
    EV_CLOCK_STALE,
    EV_COMMAND,
    EV_SAFE_MODE,
    EV_SETTINGS,
    EV_UNIT_CHANGED,
    EVENT_WINDOW,
    EVENT_WINDOW_START,
    EVENT_WORDS,
    NEVER,
    NODE_CLOCK_UNSYNCED,
    NODE_SAFE_CONFIG,
    NODE_SAFE_CRASH_LOOP,
    NODE_STORAGE_ERROR,
)
from protocols.roles.kinds import INPUT

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_DIAG_FIRST_MS = const(2000)
_DIAG_PERIOD_MS = const(10000)
_WATCH_TASKS_MS = const(1000)
_WATCHDOG_MS = const(10000)
_FC_WRITE = const(16)
_EX_DEVICE_FAILURE = const(4)
_CLOCK_STEP_S = const(2)  # smaller corrections of a synced clock are not worth an event
_NO_BUS = const((0, 0, 0, 0, 0, 0, 0, 0, 0, 0))  # the Modbus counters of diag.json on a node without a bus
# Re-exported for firmware.node_admin and firmware.node_boot, which must not import the (released) common table.
__all__ = [
    "BOOT_POWER_ON",
    "CMD_APPLY_UNIT",
    "CMD_LEAVE_SAFE_MODE",
    "CMD_NONE",
    "CMD_REBOOT",
    "EVENT_WORDS",
    "EV_BOOT",
    "EV_COMMAND",
    "EV_SAFE_MODE",
    "EV_SETTINGS",
    "EV_UNIT_CHANGED",
    "INPUT",
    "Node",
    "Settings",
    "run",
]
_COMMON = const(("clock", "tz_offset", "clock_max_age", "event_from", "unit", "command"))
_DIAG = (
    '{"heap_peak": %d, "heap_live": %d, "heap_gc_peak": %d, "heap_free": %d, "rom_heap": %d, "frames_ok": %d, '
    '"frames_other": %d, "crc_errors": %d, "bytes_dropped": %d, "answered": %d, "turnaround_us": %d, '
    '"turnaround_max_us": %d, "read_max_us": %d, "late_reads": %d, "requests": %d, "saves": %d, "event_saves": %d, '
    '"events": %d, "uptime": %d, "safe_mode": %s, "crash_loop": %s, "boot_reason": %d, '
    '"evaluations_short_of_ram": %d%s}'
)
_DIAG_BLE = ', "ble": %s'


class Node:
    """Everything one node runs, built from its board (``boot``: its :class:`BootRecord`, made here if None)."""

    def __init__(self, board, boot=None, rom_heap=0):
        self.board = board
        self._dir = board.flash_dir
        self._rom_heap = rom_heap  # a code image's buffer: the chip's flash, not its RAM
        self.prefs_error = False
        from firmware import node_boot  # boot-only code and strings: released once the node is built

        try:
            (self.boot, self.config, self.clock, self.events, self.tz_offset, self.clock_max_age, self.role_module,
             self.bank, self.store, self.crash_loop, self.role) = node_boot.build(self, board, boot)
        finally:
            node_boot = None
            release("firmware.node_boot")
        self.slave = None
        self._updater = None
        self.heap_peak = 0
        self.heap_live = 0
        self.heap_gc_peak = 0
        self._boot_ms = time.ticks_ms()
        self._was_synced = False

    def note_heap(self):
        """Collect, then record the heap in use in ``heap_peak`` (a role calls it at its own peaks)."""
        gc.collect()
        self.heap_peak = max(self.heap_peak, self.heap_in_use())

    def heap_in_use(self):
        """Bytes of heap the node holds (``gc.mem_alloc()`` without the code image's buffer)."""
        return gc.mem_alloc() - self._rom_heap

    def flash_path(self, name):
        """Path of file ``name`` in the node's flash folder."""
        return self._dir + "/" + name

    async def main(self):
        """Start every task; return (raise) only when one of them fails."""
        self.wdt = self.board.watchdog(_WATCHDOG_MS)  # first: nothing after this may hang unnoticed
        from firmware import node_boot

        try:
            self.slave, tasks = node_boot.start(self)
        finally:
            node_boot = None
            release("firmware.node_boot")
        running = [asyncio.create_task(t) for t in tasks]
        gc.collect()  # boot garbage (imports) is not the steady state that heap_peak tracks
        # As asyncio.gather (whose module, asyncio.funcs, would take heap for this alone): until every task
        # has ended (a board's part may have nothing to run), a task's error raised here, checked every second.
        while running:
            for task in running:
                if task.done():
                    running.remove(task)
                    await task  # raises the task's error
                    break
            else:
                await asyncio.sleep_ms(_WATCH_TASKS_MS)

    async def _sampler(self):
        period = self.config.sample_ms
        wdt = self.wdt
        due = time.ticks_add(time.ticks_ms(), period)
        while True:
            delay = time.ticks_diff(due, time.ticks_ms())
            if delay > 0:
                await asyncio.sleep_ms(delay)
            now = time.ticks_ms()
            if time.ticks_diff(now, due) > period:
                due = now  # fell behind (a long stall): do not try to catch up
            due = time.ticks_add(due, period)
            self.clock.update()
            if self.role is not None:
                self.role.sample(now)
            self._publish()
            self.events.tick(now)
            self.boot.ran(time.ticks_diff(now, self._boot_ms))
            self.heap_gc_peak = max(self.heap_gc_peak, self.heap_in_use())
            gc.collect()
            live = self.heap_in_use()
            self.heap_live = live
            self.heap_peak = max(self.heap_peak, live)
            wdt.feed()

    async def _diagnostics(self):
        await asyncio.sleep_ms(_DIAG_FIRST_MS)
        while True:
            self.write_diagnostics()
            await asyncio.sleep_ms(getattr(self.board, "diag_ms", _DIAG_PERIOD_MS))

    def write_diagnostics(self):
        """Write ./diag.json (atomically)."""
        slave = self.slave
        bus = _NO_BUS
        if slave is not None:
            framer = slave.framer
            bus = (framer.frames_ok, framer.frames_other, framer.crc_errors, framer.bytes_dropped, slave.answered,
                   slave.turnaround_us, slave.turnaround_max_us, slave.read_max_us, slave.late_reads, slave.requests)
        beacon = getattr(self.role, "beacon", None)
        short_of_ram = getattr(self.role, "memory_errors", 0)
        # One format string, not a dictionary: its keys would be names the node interns (RAM) for this alone.
        text = _DIAG % ((self.heap_peak, self.heap_live, self.heap_gc_peak, gc.mem_free(), self._rom_heap) + bus + (
            self.store.saves, self.events.saves, self.events.count,
            time.ticks_diff(time.ticks_ms(), self._boot_ms) // 1000,
            "true" if self.config.safe_mode else "false", "true" if self.crash_loop else "false", self.boot.reason,
            short_of_ram, "" if beacon is None else _DIAG_BLE % beacon.diagnostics()))
        try:
            atomic_write(self.flash_path("diag.json"), text)
        except OSError:
            pass  # diagnostics are best effort


    # --- the registers every node has ------------------------------------------------------------

    def _publish(self):
        """Refresh the common registers (once per sample, and after a write that moves them)."""
        bank = self.bank
        clock = self.clock
        bank.set("clock", clock.epoch() or 0)
        age = clock.age_s()
        bank.set("clock_age", NEVER if age is None else age)
        synced = clock.synced()
        if self._was_synced and not synced:
            self.events.log(EV_CLOCK_STALE, age // 60)
        self._was_synced = synced
        status = 0 if synced else NODE_CLOCK_UNSYNCED
        if self.config.safe_mode:
            status |= NODE_SAFE_CONFIG
        if self.crash_loop:
            status |= NODE_SAFE_CRASH_LOOP
        if self.events.error or self.boot.error or self.store.error or self.prefs_error:
            status |= NODE_STORAGE_ERROR
        bank.set("node_status", status)
        bank.set("uptime", time.ticks_diff(time.ticks_ms(), self._boot_ms) // 1000)
        events = self.events
        if events.changed:
            bank.set("event_next", events.next_seq)
            bank.set("event_oldest", events.oldest())
            bank.set("event_lost", events.lost)
            n = events.fill(bank.input, EVENT_WINDOW_START, bank.get("event_from"), EVENT_WINDOW)
            bank.set("event_count", n)

    def on_write(self, names):
        """A master's write, stored in the bank: act on it or refuse it (ModbusException: the bank undoes it)."""
        common = False
        routine = True  # only a time sync, an event cursor or a command: no setting moved
        for name in names:
            if name in _COMMON:
                common = True
            if name != "clock" and name != "event_from" and name != "command":
                routine = False
        if not common:
            if self.role is None:
                raise ModbusException(_FC_WRITE, _EX_DEVICE_FAILURE, "crash-loop safe mode: the role is not running")
            self.role.on_write(names)
            self._settings_changed()
            return
        bank = self.bank
        admin = None
        for name in names:
            if name == "clock":
                self._set_clock(bank.get("clock"))
            elif name == "event_from":
                self.events.acknowledge(bank.get("event_from"))
            elif name == "tz_offset" or name == "clock_max_age" or name == "command":
                admin = name
        if admin is not None:
            from firmware import node_admin

            try:
                if admin == "command":
                    node_admin.command(self, bank.get("command"))
                else:
                    node_admin.prefs(self, names)
            finally:
                node_admin = None
                release("firmware.node_admin")
        if not routine:
            self._settings_changed()
        self._publish()

    def _settings_changed(self):
        # The gateway reads settings only when this counter moves (its poll plans skip them otherwise).
        bank = self.bank
        bank.set("settings_changes", (bank.get("settings_changes") + 1) & 0xFFFF)

    def _set_clock(self, epoch):
        clock = self.clock
        correction = clock.set(epoch)
        if correction is None:
            self.events.retime(epoch - clock.uptime_s())
            self.events.log(EV_CLOCK_SET, 0)
        elif correction >= _CLOCK_STEP_S or correction <= -_CLOCK_STEP_S:
            self.events.log(EV_CLOCK_SET, correction)

    # --- the node's Modbus file records (functions 20 and 21): the door to an update over the bus --------
    # Answered through firmware.update, imported at the first record: a node never updated does not carry it.

    def updater(self):
        """The node's :class:`firmware.update.Updater` (made, and its module imported, at the first use)."""
        if self._updater is None:
            from firmware.update import Updater

            self._updater = Updater(self)
        return self._updater

    def read_record(self, file, record, count, values):
        """Function 20: ``count`` words of record ``record`` of file ``file`` into ``values``."""
        self.updater().read_record(file, record, count, values)

    def write_record(self, file, record, data):
        """Function 21: the words ``data`` to record ``record`` of file ``file``."""
        self.updater().write_record(file, record, data)

    def pending_reset(self):
        """The reset a COMMIT that switched the code slot waits for (after its answer), or None."""
        reset = getattr(self, "reset_after", None)  # a reboot command over GATT (firmware.node_admin)
        return reset or (self._updater.reset_pending if self._updater is not None else None)

    def save(self):
        """Write counters and events to flash now."""
        self.store.save_now()
        self.events.flush()

    def silence_ms(self):
        """Milliseconds since the last request addressed to this node (since boot if none)."""
        slave = self.slave
        last = slave.last_ms if slave is not None else self._boot_ms
        return time.ticks_diff(time.ticks_ms(), last)


class Settings:
    """The configuration in force (``firmware.config.Config``'s fields), without holding that module in RAM."""

    def __init__(self, cfg):
        self.unit = cfg.unit
        self.role = cfg.role
        self.baud = cfg.baud
        self.sample_ms = cfg.sample_ms
        self.safe_mode = cfg.safe_mode
        self.problem = cfg.problem


def run(board, rom_heap=0):
    """Run the node on ``board`` until a task fails (the caller resets the board).

    ``rom_heap``: heap bytes the code image's buffer takes (the virtual board), left out of the figures.

    An unexpected error is written down in the boot record first, so the next
    boot knows it follows a crash (and counts it toward crash-loop safe mode).
    """
    from firmware.node_boot import boot_record

    boot = boot_record(board)  # first: a crash while the node is built counts too
    boot_record = None
    try:
        asyncio.run(Node(board, boot, rom_heap).main())
    except Exception:
        boot.crashed()
        raise
