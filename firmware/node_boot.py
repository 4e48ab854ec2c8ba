"""What a node does once per boot: build its parts, then start its tasks.

Imported by :class:`firmware.node.Node` for its construction and for the start
of ``Node.main()``, and released after each (:func:`firmware.lazy.release`).
Each string and tuple a module uses is an object in the heap for as long as
the module is imported (about 40 B each on the unix port, code in ROM or not):
file names, log lines and the boot's register names cost nothing once the
node runs.
"""

import gc
import time

from firmware import roles
from firmware.events import Clock, EventLog
from firmware.lazy import release
from firmware.node import (  # the node's copies: the common table itself may have left RAM
    BOOT_POWER_ON,
    EV_BOOT,
    EV_SAFE_MODE,
    EVENT_WINDOW,
    EVENT_WINDOW_START,
    EVENT_WORDS,
    INPUT,
    NODE_SAFE_CONFIG,
    NODE_SAFE_CRASH_LOOP,
    Settings,
)
from firmware.registers import RegisterBank
from firmware.storage import BootRecord, Storage, read_json

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_DEFAULT_MAX_AGE_MIN = const(10080)
_DEFAULT_BAUD = const(19200)
_TABLES = const(("protocols.roles.common", "protocols.roles.kinds"))


def boot_record(board):
    """The node's :class:`BootRecord` (``boot.json``), with the chip's reset cause."""
    cause = getattr(board, "reset_cause", None)
    return BootRecord(board.flash_dir + "/boot.json", cause() if cause is not None else BOOT_POWER_ON)


def build(node, board, boot):
    """The parts of ``node`` (see :class:`firmware.node.Node`): ``(boot, config, clock, events, tz_offset,
    clock_max_age, role_module, bank, store, crash_loop, role)``; the role is None in crash-loop safe mode."""
    if boot is None:
        boot = boot_record(board)
    from firmware import config

    cfg = Settings(config.load(node.flash_path("config.json")))
    config = None
    release("firmware.config")  # needed again only to change the unit (firmware.node_admin)
    clock = Clock(getattr(board, "ticks_ms", None))
    events = EventLog(node.flash_path("events.bin"), clock)
    prefs = read_json(node.flash_path("node.json")) or {}
    tz_offset = _int_in(prefs.get("tz_offset"), -720, 840, 0)
    clock_max_age = _int_in(prefs.get("clock_max_age"), 1, 65535, _DEFAULT_MAX_AGE_MIN)
    clock.max_age_s = clock_max_age * 60
    prefs = None
    gc.collect()  # imports land in one tidy heap: less fragmentation at the peak of the boot
    role_module = roles.load(cfg.role)
    release("firmware.roles")  # the package's loader is done; the role module stays
    blocks = ((INPUT, EVENT_WINDOW_START, EVENT_WINDOW * EVENT_WORDS),)
    blocks += getattr(role_module, "BLOCKS", ())
    # The compact form (rows); MAP, a RegisterMap, has an object per register.
    rows = getattr(role_module, "registers", None)
    rows = rows() if rows is not None else getattr(role_module, "REGISTERS", None)
    if rows is not None:
        bank = RegisterBank(rows, blocks=blocks, role=cfg.role, role_id=role_module.ROLE_ID,
                            mirrors=getattr(role_module, "MIRRORS", ()))
    else:
        bank = RegisterBank(role_module.MAP, blocks=blocks, mirrors=getattr(role_module, "MIRRORS", ()))
    rows = None
    tables = getattr(role_module, "RELEASE_TABLES", False)
    _release(tables, cfg.role)  # before the role builds its parts: the boot's peak
    store = Storage(node.flash_path("counters.json"))
    role = None
    if not boot.crash_loop:
        role = role_module.Role(board, bank, store, cfg.safe_mode)
        for name, part in (("events", events), ("clock", clock), ("node", node)):
            if hasattr(role, name):
                setattr(role, name, part)
        _release(tables, cfg.role)  # again, if the role looked something up in its table
    bank.on_write = node.on_write
    events.log(EV_BOOT, boot.reason)
    if boot.crash_loop:
        events.log(EV_SAFE_MODE, NODE_SAFE_CRASH_LOOP)
    elif cfg.safe_mode:
        events.log(EV_SAFE_MODE, NODE_SAFE_CONFIG)
    return boot, cfg, clock, events, tz_offset, clock_max_age, role_module, bank, store, boot.crash_loop, role


def start(node):
    """Start ``node`` (its watchdog running): the registers every node has, the role (or its safe state), the bus.

    Returns ``(slave, tasks)``: the Modbus slave (None without a bus), the coroutines ``Node.main()`` runs.
    """
    cfg = node.config
    board = node.board
    if cfg.safe_mode:
        print("streetedge SAFE MODE:", cfg.problem)
    if node.crash_loop:
        print("streetedge SAFE MODE: crash loop (%d bad boots); command 4 leaves it" % node.boot.bad)
    _start_common(node)
    role = node.role
    if role is not None:
        role.start()
        role.sample(time.ticks_ms())  # registers are meaningful before the first request
    else:
        safe_state = getattr(node.role_module, "safe_state", None)
        if safe_state is not None:
            safe_state(board, node.bank)
    node._publish()
    node.bank.files = node  # Modbus file records (functions 20/21): updates over the bus or GATT
    tasks = [node._sampler(), node._diagnostics()]
    slave = None
    # A node without a bus (config "bus": false) is reached over its radio, and loads no Modbus code;
    # one whose radio did not start opens the bus all the same, so that it can be reached at all.
    if cfg.baud or getattr(role, "beacon", None) is None:
        from firmware.modbus_slave import ModbusSlave

        baud = cfg.baud or _DEFAULT_BAUD
        slave = ModbusSlave(board.open_rs485(baud), cfg.unit, node.bank, baud)
        tasks.append(slave.run())
    if (read_json(node.flash_path("rom/state.json")) or {}).get("trial"):
        tasks.append(node.updater().run())  # a new image on trial: confirm it or roll it back
    tasks.extend(board.tasks())
    print("streetedge node ready unit=%d role=%s" % (cfg.unit, cfg.role))  # no task runs before Node.main waits
    return slave, tasks


def _start_common(node):
    bank = node.bank
    bank.set("role", bank.role_id)
    bank.set("firmware", getattr(node.role_module, "FIRMWARE_VERSION", 0))
    boot = node.boot
    bank.set("boot_reason", boot.reason)
    bank.set("boots", boot.boots)
    bank.set("crash_resets", min(boot.crashes, 0xFFFF))
    bank.set("wdt_resets", min(boot.watchdogs, 0xFFFF))
    bank.set("tz_offset", node.tz_offset)
    bank.set("clock_max_age", node.clock_max_age)
    bank.set("unit", node.config.unit)


def _release(tables, role_name):
    if tables:
        # The bank has packed the rows and the firmware holds copies of the numbers it uses:
        # the contract modules can leave RAM (a rare task that needs them imports them again).
        for name in _TABLES + ("protocols.roles." + role_name,):
            release(name)
        gc.collect()


def _int_in(v, lo, hi, default):
    if isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi:
        return v
    return default
