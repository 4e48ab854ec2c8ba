"""The street-light controller: its register map, the one source of truth.

Holding registers are what the gateway commands and configures; input
registers are what the node measures. Addresses 0..99 are the lamp's; the
registers every node has (clock, events, boot record, unit) follow at 100..
(``protocols.roles.common``).

Who drives the lamp (input ``control``):

- ``CONTROL_GATEWAY``: ``dim_level`` and ``relay`` as the gateway wrote them;
- ``CONTROL_PROGRAM``: ``mode`` = 1, the node follows its calendar, programs,
  photocell and override (``firmware/schedule.py``);
- ``CONTROL_AUTONOMOUS``: ``mode`` = 0 but no request addressed to this node
  for ``autonomy_after`` seconds: the node follows its program as in mode 1;
- ``CONTROL_POWER_UP``: since boot nobody has written ``dim_level`` or
  ``relay``: the node follows its program too.

The rule: a master's write to ``dim_level`` or ``relay`` (broadcast included)
gives control to the gateway (``mode`` becomes 0); any request addressed to
the node, reads included, keeps the gateway present; reads alone never take
control back from the program. Writing ``mode`` = 1 hands control to the
program, ``mode`` = 0 back to the gateway at the present levels. While the
program drives the lamp, ``dim_level`` and ``relay`` show what it does.
Without a set clock (or with invalid settings) the program's level is
``safe_level`` (default 100 %), switched off only when the photocell sees
daylight: a lamp that powers up alone lights the street at night.

Input 27 and 28 (``MIRRORS``) answer ``dim_level`` and ``relay`` again, the
same words as holding 0 and 1: the registers a routine poll needs then lie in
one run of the input table (0..28), one request on a serial line. Since
firmware 1.1 (``MIRRORS_SINCE``); 1.0 reads 0 there.

Programs and calendar are blocks of holding registers after the map (the
gateway's routine poll does not read them; the meaning is in
``firmware/schedule.py``):

- program window, holding 200..249 (``PROGRAM_START``): ``program_id``,
  ``program_len``, then 16 switch points of three words: kind (0 fixed, 1
  sunrise, 2 sunset), offset (s16 minutes: fixed 0..1439 after local
  midnight, else -360..360 from the event), level %. Writing ``program_id``
  alone loads that program into the window. A write that covers
  ``program_len`` stores program ``program_id`` with the window's first
  ``program_len`` points (0 deletes it; a program the calendar uses cannot be
  deleted); an invalid program is refused (exception 3) and nothing changes.
  Points written without ``program_len`` wait in the window.
- calendar, holding 250..282 (``CALENDAR_START``): the default program, then
  eight rules of four words: program, weekday mask (bit 0 Monday; a night is
  named by its evening), from and to (month * 100 + day, inclusive, may wrap
  the new year; 0 for no date range). A rule with mask 0 and from 0 is
  unused; the last matching rule wins. A write that leaves the calendar
  invalid or naming a program not stored is refused. So the gateway writes
  programs first, then the calendar.

Every word of a block has the bounds ``block_bounds(address)`` gives; a write
out of bounds is refused (exception 3), a write across the end of a block or
into a gap (exception 2).

The registers of the map (the ``doc`` of each row, for the gateway and
``docs/registers``; the common ones are in ``protocols.roles.common``):

- ``dim_level``: Target light level; 0 is off at the driver. A write gives control to
  the gateway
- ``relay``: Lamp supply relay: 1 closed (on), 0 open. A write gives control to the
  gateway
- ``mode``: 0 gateway drives the lamp (its program when the gateway is silent), 1 the
  program does; persisted
- ``autonomy_after``: Silence (no request to this node) after which the program drives
  the lamp; default 300; persisted
- ``safe_level``: Program level without a set clock or valid settings (off in daylight);
  default 100; persisted
- ``override_level``: Level the program holds during an override
- ``override_minutes``: Write to start an override of the program (0 ends it); reads the
  minutes left
- ``latitude``: Latitude of the lamp; persisted
- ``longitude``: Longitude of the lamp; persisted
- ``photo_on``: Photocell: dark below this; persisted
- ``photo_off``: Photocell: daylight above this (> photo_on); 0 no photocell (default);
  persisted
- ``photo_level``: Level when the photocell lights a lamp its program has off; default
  100; persisted
- ``rated_power``: Luminaire power at 100 %, for the dimming-failure check; default 60;
  persisted
- ``seq``: Sample sequence number; never repeats, survives reboots
- ``power``: Active power drawn by the lamp
- ``voltage``: Supply voltage (RMS)
- ``current``: Supply current (RMS)
- ``energy``: Energy delivered since manufacture; monotonic, persisted
- ``temperature``: Driver temperature
- ``status``: Status flags, see STATUS_FLAGS
- ``uptime``: Seconds since the node booted
- ``role``: Role identifier: 1 for a lamp controller
- ``firmware``: Firmware version, major in the high byte
- ``level_actual``: Light the luminaire gives now (the driver's fade, modelled)
- ``level_target``: Level the lamp is driven to (0 with the relay open)
- ``power_factor``: Power factor (0 without current)
- ``burn_time``: Time lit since manufacture (burning hours); persisted
- ``switch_ons``: Times the lamp went from dark to lit; persisted
- ``supply_losses``: Mains losses seen by the node; persisted
- ``control``: Who drives the lamp: 0 gateway, 1 program (mode 1), 2 program (gateway
  silent), 3 program (power-up)
- ``level_source``: Why this level: 0 program, 1 override, 2 photocell, 3 safe (no
  clock), 4 safe (bad settings), 5 gateway
- ``lux``: Photocell reading (0 without a photocell)
- ``silence``: Seconds since the last request to this node (up to 65535)
- ``programs``: Bit N set: program N is stored (program window: holding 200..249,
  calendar: 250..282)
"""

import sys

from protocols.roles import common, lazy_map
from protocols.roles.kinds import BOOL, HOLDING, INPUT, RO, RW, S16, S32, U16, U32, with_docs

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


ROLE_ID = const(1)
FIRMWARE_VERSION = const(0x0101)  # 1.1, major in the high byte

# Bits of the `status` register.
STATUS_LAMP_ON = const(0x0001)  # the relay is closed and the lamp draws power
STATUS_LAMP_FAILURE = const(0x0002)  # relay closed, level > 0, but no power drawn
STATUS_OVER_TEMPERATURE = const(0x0004)  # driver above its rated temperature
STATUS_SAFE_MODE = const(0x0008)  # configuration invalid or crash loop: see node_status
STATUS_STORAGE_ERROR = const(0x0010)  # the last write to flash failed
STATUS_DIMMING_FAILURE = const(0x0020)  # settled power far from what the level asks
STATUS_RELAY_FAILURE = const(0x0040)  # relay open but power drawn (welded contact)
STATUS_ON_WHEN_OFF = const(0x0080)  # lit although commanded off
STATUS_OVER_VOLTAGE = const(0x0100)
STATUS_UNDER_VOLTAGE = const(0x0200)
STATUS_SUPPLY_LOSS = const(0x0400)  # no mains at the meter
STATUS_CLOCK_UNSYNCED = const(0x0800)  # copy of the node's flag: the program runs on safe level
STATUS_FLAGS = (
    (STATUS_LAMP_ON, "lamp_on"),
    (STATUS_LAMP_FAILURE, "lamp_failure"),
    (STATUS_OVER_TEMPERATURE, "over_temperature"),
    (STATUS_SAFE_MODE, "safe_mode"),
    (STATUS_STORAGE_ERROR, "storage_error"),
    (STATUS_DIMMING_FAILURE, "dimming_failure"),
    (STATUS_RELAY_FAILURE, "relay_failure"),
    (STATUS_ON_WHEN_OFF, "on_when_off"),
    (STATUS_OVER_VOLTAGE, "over_voltage"),
    (STATUS_UNDER_VOLTAGE, "under_voltage"),
    (STATUS_SUPPLY_LOSS, "supply_loss"),
    (STATUS_CLOCK_UNSYNCED, "clock_unsynced"),
)
# Status bits that are alarms: each raise and clear is an event (EV_ALARM_ON / EV_ALARM_OFF).
ALARMS = const(
    STATUS_LAMP_FAILURE | STATUS_OVER_TEMPERATURE | STATUS_STORAGE_ERROR | STATUS_DIMMING_FAILURE
    | STATUS_RELAY_FAILURE | STATUS_ON_WHEN_OFF | STATUS_OVER_VOLTAGE | STATUS_UNDER_VOLTAGE
    | STATUS_SUPPLY_LOSS
)

# Alarm thresholds.
OVER_VOLTAGE_DV = const(2530)  # 230 V + 10 %, in 0.1 V
UNDER_VOLTAGE_DV = const(2070)  # 230 V - 10 %
SUPPLY_LOSS_DV = const(1000)  # below 100 V there is no mains
OVER_TEMPERATURE_DC = const(850)  # 85 C in 0.1 C

# `control` values.
CONTROL_GATEWAY = const(0)
CONTROL_PROGRAM = const(1)
CONTROL_AUTONOMOUS = const(2)
CONTROL_POWER_UP = const(3)
# `level_source`: firmware.schedule's sources, then the gateway.
SOURCE_GATEWAY = const(5)

# Lamp events (codes from common.EV_ROLE).
EV_CONTROL = const(32)  # value: the new control
EV_LEVEL = const(33)  # value: the new target level, % (0 also when the relay opens)
EV_PROGRAMS = const(34)  # value: program id stored (+ 256 when deleted)

PROGRAMS = const(16)
POINTS = const(16)
RULES = const(8)
PROGRAM_START = const(200)  # program_id, program_len, then POINTS x (kind, offset, level)
PROGRAM_WORDS = const(50)
CALENDAR_START = const(250)  # default program, then RULES x (program, days, from, to)
CALENDAR_WORDS = const(33)
BLOCKS = ((HOLDING, PROGRAM_START, PROGRAM_WORDS), (HOLDING, CALENDAR_START, CALENDAR_WORDS))


def block_bounds(address):
    """``(minimum, maximum)`` of the holding word at ``address`` in a block (signed for offsets); None outside."""
    k = address - PROGRAM_START
    if 0 <= k < PROGRAM_WORDS:
        if k < 2:
            return (0, PROGRAMS - 1) if k == 0 else (0, POINTS)
        return ((0, 2), (-360, 1439), (0, 100))[(k - 2) % 3]
    k = address - CALENDAR_START
    if 0 <= k < CALENDAR_WORDS:
        if k == 0:
            return (0, PROGRAMS - 1)
        return ((0, PROGRAMS - 1), (0, 127), (0, 1231), (0, 1231))[(k - 1) % 4]
    return None


# name, table, address, type, scale, unit, access, minimum, maximum, doc ("": in the module docstring); the rows
# are written in place (no name of their own: a name is RAM on the node for good).
REGISTERS = with_docs((
    ("dim_level", HOLDING, 0, U16, 0, "%", RW, 0, 100, ""),
    ("relay", HOLDING, 1, BOOL, 0, None, RW, 0, 1, ""),
    ("mode", HOLDING, 2, U16, 0, None, RW, 0, 1, ""),
    ("autonomy_after", HOLDING, 3, U16, 0, "s", RW, 2, 65535, ""),
    ("safe_level", HOLDING, 4, U16, 0, "%", RW, 0, 100, ""),
    ("override_level", HOLDING, 5, U16, 0, "%", RW, 0, 100, ""),
    ("override_minutes", HOLDING, 6, U16, 0, "min", RW, 0, 1440, ""),
    ("latitude", HOLDING, 7, S32, -6, "lat", RW, -90000000, 90000000, ""),
    ("longitude", HOLDING, 9, S32, -6, "lon", RW, -180000000, 180000000, ""),
    ("photo_on", HOLDING, 11, U16, 0, "lx", RW, 0, 65535, ""),
    ("photo_off", HOLDING, 12, U16, 0, "lx", RW, 0, 65535, ""),
    ("photo_level", HOLDING, 13, U16, 0, "%", RW, 1, 100, ""),
    ("rated_power", HOLDING, 14, U16, 0, "W", RW, 1, 2000, ""),
    ("seq", INPUT, 0, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("power", INPUT, 2, U16, -1, "W", RO, 0, 0xFFFF, ""),
    ("voltage", INPUT, 3, U16, -1, "V", RO, 0, 0xFFFF, ""),
    ("current", INPUT, 4, U16, -3, "A", RO, 0, 0xFFFF, ""),
    ("energy", INPUT, 5, U32, 0, "Wh", RO, 0, 0xFFFFFFFF, ""),
    ("temperature", INPUT, 7, S16, -1, "Cel", RO, -400, 1250, ""),
    ("status", INPUT, 8, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("uptime", INPUT, 9, U32, 0, "s", RO, 0, 0xFFFFFFFF, ""),
    ("role", INPUT, 11, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("firmware", INPUT, 12, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("level_actual", INPUT, 13, U16, 0, "%", RO, 0, 100, ""),
    ("level_target", INPUT, 14, U16, 0, "%", RO, 0, 100, ""),
    ("power_factor", INPUT, 15, U16, -3, None, RO, 0, 1000, ""),
    ("burn_time", INPUT, 16, U32, 0, "s", RO, 0, 0xFFFFFFFF, ""),
    ("switch_ons", INPUT, 18, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("supply_losses", INPUT, 20, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("control", INPUT, 22, U16, 0, None, RO, 0, 3, ""),
    ("level_source", INPUT, 23, U16, 0, None, RO, 0, 5, ""),
    ("lux", INPUT, 24, U16, 0, "lx", RO, 0, 0xFFFF, ""),
    ("silence", INPUT, 25, U16, 0, "s", RO, 0, 0xFFFF, ""),
    ("programs", INPUT, 26, U16, 0, None, RO, 0, 0xFFFF, ""),
), globals().get("__doc__")) + common.rows("role", "firmware", "uptime")

# Poll classes (protocols.roles.kinds; the common rows' are in protocols.roles.common): the rest are measurements.
# `programs` changes by block writes, which do not move settings_changes: a counter, re-read every few polls.
COUNTERS = "override_minutes energy burn_time switch_ons supply_losses silence programs"
SETTINGS = "mode autonomy_after safe_level override_level latitude longitude photo_on photo_off photo_level " \
    "rated_power"
IDENTITY = "role firmware"
MEASURES = "uptime"  # inside the lamp's own measurement block: free to read, and it tells a reboot at once
# Input words that answer the holding registers the program moves (measurements: the routine poll reads them),
# right after the measurements: a serial poll of a lamp is one request. Not registers: same value, same name.
MIRRORS = (("dim_level", 27), ("relay", 28))
MIRRORS_SINCE = const(0x0101)  # lamps of firmware 1.0 read 0 there: the gateway asks only 1.1 and later


if sys.implementation.name == "micropython":
    __getattr__ = lazy_map(globals(), "lamp")  # on the node: no RegisterMap unless someone asks for MAP
else:
    from protocols.regmap import RegisterMap

    MAP = RegisterMap("lamp", REGISTERS, ROLE_ID, mirrors=MIRRORS, mirrors_since=MIRRORS_SINCE)
