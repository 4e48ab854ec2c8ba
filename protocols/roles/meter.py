"""The water meter node: a reed-switch pulse meter in a meter pit, its register map.

The meter's register (its magnet wheel) turns one revolution per pulse; one
reed switch (channel A) gives the pulses, a second one a quarter turn later
(channel B, on boards that have it) gives the direction, so water flowing
back is counted apart.

Holding registers are the node's settings: the gateway writes them, the node
checks them against the bounds below (a write out of range is refused with
exception 03 and changes nothing) and keeps them in flash across reboots.
Input registers are what the node counts and measures.

Volumes are whole litres, monotonic, and published only once saved to flash,
so they never go backwards, not even across a power cut; see
``firmware/roles/meter.py`` for how many pulses a power cut can cost.

Alarms are status bits, raised and cleared by their conditions; each change
is also an event (``EV_ALARM_ON`` / ``EV_ALARM_OFF`` of
``protocols.roles.common``, value = the status bit).

The registers of the map (the ``doc`` of each row, for the gateway and
``docs/registers``; the common ones are in ``protocols.roles.common``):

- ``pulse_volume``: Volume of one pulse (one turn of the meter's magnet); applies to
  pulses counted from now on
- ``debounce``: A reed contact counts once it was open, then closed, each for at least
  this long
- ``leak_time``: Leak alarm: flow that has not paused for this long
- ``leak_gap``: No pulse for this long counts as the flow stopping (longer than the
  pulse period of the smallest leak to catch)
- ``burst_flow``: Burst alarm: flow above this ...
- ``burst_time``: ... for at least this long
- ``backflow_limit``: Backflow alarm: this much water flowed backwards, the last of it
  less than leak_gap ago
- ``battery_low``: Low-battery alarm below this voltage
- ``seq``: Sample sequence number; never repeats, survives reboots
- ``volume``: Water delivered since manufacture, whole litres; monotonic, persisted
- ``reverse_volume``: Water that flowed backwards since manufacture, whole litres;
  monotonic, persisted
- ``flow``: Flow rate (either direction), from the pulse periods
- ``status``: Status and alarm flags, see STATUS_FLAGS
- ``battery``: Battery voltage
- ``flow_duration``: How long the flow has gone on without a pause of leak_gap (0 when
  stopped)
- ``pending``: Pulses counted but not yet saved (the most a power cut could cost now)
"""

import sys

from protocols.roles import common, lazy_map
from protocols.roles.kinds import HOLDING, INPUT, RO, RW, U16, U32, with_docs

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


ROLE_ID = const(2)
FIRMWARE_VERSION = const(0x0100)  # 1.0, major in the high byte

# Bits of the `status` register.
STATUS_FLOWING = const(0x0001)  # pulses arrive: the last one is more recent than leak_gap
STATUS_LEAK = const(0x0002)  # the flow has not paused for leak_gap within leak_time
STATUS_BURST = const(0x0004)  # flow above burst_flow for burst_time
STATUS_BACKFLOW = const(0x0008)  # backflow_limit litres flowed backwards, the last less than leak_gap ago
STATUS_TAMPER = const(0x0010)  # a strong external magnet is held against the meter
STATUS_LOW_BATTERY = const(0x0020)  # battery below battery_low
STATUS_STORAGE_ERROR = const(0x0040)  # the last save of the volumes failed: they lag until one succeeds
STATUS_NO_DIRECTION = const(0x0080)  # the board has one reed switch: no backflow detection
STATUS_FLAGS = (
    (STATUS_FLOWING, "flowing"),
    (STATUS_LEAK, "leak"),
    (STATUS_BURST, "burst"),
    (STATUS_BACKFLOW, "backflow"),
    (STATUS_TAMPER, "tamper"),
    (STATUS_LOW_BATTERY, "low_battery"),
    (STATUS_STORAGE_ERROR, "storage_error"),
    (STATUS_NO_DIRECTION, "no_direction"),
)
ALARMS = STATUS_LEAK | STATUS_BURST | STATUS_BACKFLOW | STATUS_TAMPER | STATUS_LOW_BATTERY

# Settings in force when the flash holds none (or an invalid set): raw values.
DEFAULTS = (
    ("pulse_volume", 1000),  # 1 l per pulse
    ("debounce", 20),
    ("leak_time", 21600),  # 6 h of flow without a pause
    ("leak_gap", 900),
    ("burst_flow", 1000),  # 1 l/s = 60 l/min
    ("burst_time", 30),
    ("backflow_limit", 10),  # 1 l
    ("battery_low", 3300),  # a 3.6 V lithium thionyl chloride cell near its end
)

# name, table, address, type, scale, unit, access, minimum, maximum, doc
_ROWS = (
    ("pulse_volume", HOLDING, 0, U16, -3, "l", RW, 1, 10000, ""),
    ("debounce", HOLDING, 1, U16, 0, "ms", RW, 1, 500, ""),
    ("leak_time", HOLDING, 2, U32, 0, "s", RW, 5, 1209600, ""),
    ("leak_gap", HOLDING, 4, U16, 0, "s", RW, 1, 3600, ""),
    ("burst_flow", HOLDING, 5, U16, -3, "l/s", RW, 1, 0xFFFF, ""),
    ("burst_time", HOLDING, 6, U16, 0, "s", RW, 1, 3600, ""),
    ("backflow_limit", HOLDING, 7, U16, -1, "l", RW, 1, 0xFFFF, ""),
    ("battery_low", HOLDING, 8, U16, -3, "V", RW, 2000, 4200, ""),
    ("seq", INPUT, 0, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("volume", INPUT, 2, U32, 0, "l", RO, 0, 0xFFFFFFFF, ""),
    ("reverse_volume", INPUT, 4, U32, 0, "l", RO, 0, 0xFFFFFFFF, ""),
    ("flow", INPUT, 6, U16, -3, "l/s", RO, 0, 0xFFFF, ""),
    ("status", INPUT, 7, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("battery", INPUT, 8, U16, -3, "V", RO, 0, 0xFFFF, ""),
    ("flow_duration", INPUT, 9, U32, 0, "s", RO, 0, 0xFFFFFFFF, ""),
    ("pending", INPUT, 11, U16, 0, None, RO, 0, 0xFFFF, ""),
)

# Poll classes (protocols.roles.kinds): the rest are measurements (the volumes are the meter's reading).
COUNTERS = "flow_duration"
SETTINGS = "pulse_volume debounce leak_time leak_gap burst_flow burst_time backflow_limit battery_low"
IDENTITY = ""

REGISTERS = with_docs(_ROWS, globals().get("__doc__")) + common.rows()
del _ROWS

if sys.implementation.name == "micropython":
    __getattr__ = lazy_map(globals(), "meter")  # on the node: no RegisterMap unless someone asks for MAP
else:
    from protocols.regmap import RegisterMap

    MAP = RegisterMap("meter", REGISTERS, ROLE_ID)
