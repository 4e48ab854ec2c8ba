"""Registers every node has, whatever its role: declared once, included by each role's map.

A role's map keeps addresses 0..99 of each table for itself; the common rows
sit at 100..119 and the event window block at input 120..175 (keep role
blocks above 199)::

    from protocols.roles import common
    REGISTERS = ROLE_ROWS + common.rows()          # every common row
    REGISTERS = ROLE_ROWS + common.rows("uptime")  # the role declares its own `uptime`

``rows(*exclude)`` leaves out the named common rows, for a role that declared
the same value earlier at its own address (the lamp keeps ``role``,
``firmware`` and ``uptime`` at input 11, 12 and 9).

Clock. ``clock`` (holding 100) reads the node's time, Unix epoch seconds UTC, or
0 if it has not been set since boot; the gateway writes it to synchronise.
Between writes the node counts its own ticks. ``node_status`` bit
``clock_unsynced`` is set while the clock has not been written since boot or
the last write is older than ``clock_max_age`` minutes; ``clock_age`` says
how old the last write is (0xFFFFFFFF: never since boot).

Event log. Each event is ``(seq, time, code, value)``: ``seq`` never repeats
(gaps after a power cut are allowed), ``time`` is epoch seconds, or the
node's uptime in seconds when the event happened before the clock was set
(any value below ``CLOCK_MIN``, 2020-01-01: once the clock is set, the node
rewrites the times of this boot's events), ``code`` one of ``EV_*`` (the
role adds its own from ``EV_ROLE``), ``value`` per code. The node keeps the
last events in a ring; when the ring is full the oldest is overwritten, and
``event_lost`` counts those the gateway had not passed yet (seq >= the
latest ``event_from``). The events themselves are not registers of the map
(the gateway's routine poll does not read them): they sit in a block of
``EVENT_WINDOW`` x ``EVENT_WORDS`` input registers at ``EVENT_WINDOW_START``
(120..175), each event as seq u32, time u32, code u16, value s32, high words
first; unused slots read 0. To read them:

1. write ``event_from`` = the first seq wanted (the last seq seen + 1; 0 for
   everything still held);
2. read input 112..175 (``event_next``, ``event_oldest``, ``event_lost``,
   ``event_count`` and the window, one request): ``event_count`` events
   follow, in seq order, starting with the lowest seq >= ``event_from`` still
   held (``event_oldest`` > ``event_from``: the events between were
   overwritten);
3. if the last seq + 1 < ``event_next``, write ``event_from`` = last seq + 1
   and read again.

Plain reads and writes, repeatable at will: a lost answer costs a re-read,
never an event. After an outage the gateway catches up from its last seq.

The registers (the ``doc`` of each row, for the gateway and ``docs/registers``):

- ``clock``: Node clock, Unix epoch seconds UTC; write to set it (time sync);
  reads 0 until set since boot
- ``tz_offset``: Local time minus UTC (the gateway follows summer time); persisted
- ``clock_max_age``: A clock not written for longer counts as unsynced; default
  10080 (a week); persisted
- ``event_from``: First event seq the event window (input 120..175) shows:
  write the last seq seen + 1
- ``unit``: Modbus unit; a write only stages a new unit, command 3 applies and
  persists it
- ``command``: 1 reboot, 2 save counters and events now, 3 apply the staged unit
  (not by broadcast), 4 leave crash-loop safe mode; reads 0
- ``role``: Role identifier of the node
- ``firmware``: Firmware version, major in the high byte
- ``uptime``: Seconds since the node booted
- ``node_status``: 1 clock unsynced, 2 safe mode (bad configuration), 4 safe
  mode (crash loop), 8 storage error
- ``boot_reason``: Why the node last booted: 0 power on, 1 watchdog, 2 crash,
  3 command, 4 other reset
- ``boots``: Boots since manufacture; persisted
- ``crash_resets``: Boots after a crash; persisted
- ``wdt_resets``: Boots after a watchdog reset; persisted
- ``clock_age``: Seconds since the clock was last written; 4294967295 if not
  since boot
- ``event_next``: Seq the next event will get
- ``event_oldest``: Oldest event seq still held (event_next when the log is empty)
- ``event_lost``: Events overwritten in the full ring before event_from passed
  them; persisted
- ``event_count``: Events in the window at input 120..175 (8 x seq u32, time
  u32, code u16, value s32)
- ``settings_changes``: Writes that changed the node's settings since boot
  (wraps at 65536): the gateway reads the settings again when it moves

Unit change. ``unit`` reads the node's Modbus unit; writing it only stages a
new one. Writing ``command`` = ``CMD_APPLY_UNIT`` (in the same request or a
later one, never by broadcast) checks it, persists it in the node's
configuration and answers that request on the old unit; every later request
must use the new one.
"""

from protocols.roles.kinds import HOLDING, INPUT, RO, RW, S16, U16, U32, with_docs

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


# A clock before 2020 has not been set; the astronomical tables stop at 2100.
CLOCK_MIN = 1577836800  # 2020-01-01T00:00Z
CLOCK_MAX = 4102444799  # 2099-12-31T23:59:59Z
NEVER = 0xFFFFFFFF  # clock_age of a clock not set since boot

# Bits of `node_status`.
NODE_CLOCK_UNSYNCED = const(0x0001)
NODE_SAFE_CONFIG = const(0x0002)  # config.json missing or invalid: defaults in force
NODE_SAFE_CRASH_LOOP = const(0x0004)  # repeated crashes: the role is not running
NODE_STORAGE_ERROR = const(0x0008)  # the last write to flash failed

# `boot_reason`.
BOOT_POWER_ON = const(0)  # power applied (or cut and restored)
BOOT_WATCHDOG = const(1)  # the watchdog reset a stuck node
BOOT_CRASH = const(2)  # an unexpected error reset the node
BOOT_COMMAND = const(3)  # CMD_REBOOT (or a unit change / leaving safe mode)
BOOT_OTHER = const(4)  # reset pin, brown-out, anything else the chip reports

# `command` values.
CMD_NONE = const(0)
CMD_REBOOT = const(1)
CMD_SAVE = const(2)  # write counters and events to flash now (before a planned power cut)
CMD_APPLY_UNIT = const(3)  # make the staged `unit` the node's unit, persisted
CMD_LEAVE_SAFE_MODE = const(4)  # forget the crash history and reboot normally
CMD_MAX = const(4)

# Event codes common to every role; roles number theirs from EV_ROLE.
EV_BOOT = const(1)  # value: boot reason
EV_CLOCK_SET = const(2)  # value: correction in seconds (new - old), 0 for the first set since boot
EV_SAFE_MODE = const(3)  # value: NODE_SAFE_* bit in force
EV_UNIT_CHANGED = const(4)  # value: the new unit
EV_SETTINGS = const(5)  # value: address of the first holding register of a settings write
EV_ALARM_ON = const(6)  # value: the role's status bit that was raised
EV_ALARM_OFF = const(7)  # value: the role's status bit that cleared
EV_CLOCK_STALE = const(8)  # value: minutes since the last sync
EV_COMMAND = const(9)  # value: the command executed
EV_ROLE = const(32)

EVENT_WINDOW = const(8)  # events shown at once
EVENT_WORDS = const(7)  # per event: seq u32, time u32, code u16, value s32 (high words first)
EVENT_WINDOW_START = const(120)  # input address of the first event's seq: a block after the map

# name, table, address, type, scale, unit, access, minimum, maximum, doc ("": in the module docstring)
COMMON = with_docs((
    ("clock", HOLDING, 100, U32, 0, "s", RW, CLOCK_MIN, CLOCK_MAX, ""),
    ("tz_offset", HOLDING, 102, S16, 0, "min", RW, -720, 840, ""),
    ("clock_max_age", HOLDING, 103, U16, 0, "min", RW, 1, 65535, ""),
    ("event_from", HOLDING, 104, U32, 0, None, RW, 0, 0xFFFFFFFF, ""),
    ("unit", HOLDING, 106, U16, 0, None, RW, 1, 247, ""),
    ("command", HOLDING, 107, U16, 0, None, RW, 0, CMD_MAX, ""),
    ("role", INPUT, 100, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("firmware", INPUT, 101, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("uptime", INPUT, 102, U32, 0, "s", RO, 0, 0xFFFFFFFF, ""),
    ("node_status", INPUT, 104, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("boot_reason", INPUT, 105, U16, 0, None, RO, 0, 4, ""),
    ("boots", INPUT, 106, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("crash_resets", INPUT, 108, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("wdt_resets", INPUT, 109, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("clock_age", INPUT, 110, U32, 0, "s", RO, 0, 0xFFFFFFFF, ""),
    ("event_next", INPUT, 112, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("event_oldest", INPUT, 114, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("event_lost", INPUT, 116, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("event_count", INPUT, 118, U16, 0, None, RO, 0, EVENT_WINDOW, ""),
    ("settings_changes", INPUT, 119, U16, 0, None, RO, 0, 0xFFFF, ""),
), globals().get("__doc__"))


# Poll classes of the common rows (protocols.roles.kinds): the rest are measurements.
# node_status repeats bits of each role's own status; events and settings are caught up within a few polls
# (and a command's writes are followed at once by the gateway itself).
# uptime tells a reboot (it goes back); a role whose own block holds it reads it as a measurement (MEASURES).
COUNTERS = "clock uptime clock_age node_status event_next event_oldest event_lost event_count settings_changes"
SETTINGS = "tz_offset clock_max_age event_from"
IDENTITY = "unit command role firmware boot_reason boots crash_resets wdt_resets"


def rows(*exclude):
    """The common rows, without those named in ``exclude`` (a role that declares them itself)."""
    for name in exclude:
        if not any(r[0] == name for r in COMMON):
            raise ValueError("no common register %r" % (name,))
    return tuple(r for r in COMMON if r[0] not in exclude)
