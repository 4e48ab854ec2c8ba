"""The environment node: weather and air quality on a lamp post, its register map.

Sensors: a BME280-class chip on I2C (temperature, humidity, pressure), an
SDS011-class laser dust sensor on a UART (PM2.5, PM10) and a sound-level
module on an ADC input (noise, dB(A)).

Each value register holds the last good reading. When a sensor stops
answering (or answers garbage) its fault bit in ``status`` is set and its
registers keep their last good values (0 if it never answered since boot);
the node itself goes on serving the bus.

Holding registers are the node's settings, bounded and persisted.

The registers of the map (the ``doc`` of each row, for the gateway and
``docs/registers``; the common ones are in ``protocols.roles.common``):

- ``climate_period``: Seconds between BME280 measurements
- ``pm_period``: Seconds between dust readings; from 60 s on, the sensor sleeps between
  them (laser life)
- ``noise_offset``: Calibration added to the noise level
- ``temperature_offset``: Calibration added to the temperature (self-heating of the
  enclosure)
- ``seq``: Sample sequence number; never repeats, survives reboots
- ``temperature``: Air temperature
- ``humidity``: Relative humidity
- ``pressure``: Barometric pressure at the sensor
- ``pm25``: Particulate matter below 2.5 um
- ``pm10``: Particulate matter below 10 um
- ``noise``: Sound level, dB(A), averaged over the sample
- ``status``: Status and fault flags, see STATUS_FLAGS
- ``climate_errors``: Failed BME280 transactions since boot
- ``pm_errors``: Bad dust-sensor frames (checksum, garbage) and unanswered queries since
  boot
"""

import sys

from protocols.roles import common, lazy_map
from protocols.roles.kinds import HOLDING, INPUT, RO, RW, S16, U16, U32, with_docs

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


ROLE_ID = const(3)
FIRMWARE_VERSION = const(0x0100)  # 1.0, major in the high byte

# Bits of the `status` register.
STATUS_CLIMATE_FAULT = const(0x0001)  # BME280: no answer, wrong chip id, or no result
STATUS_PM_FAULT = const(0x0002)  # SDS011: no valid frame to the last queries
STATUS_NOISE_FAULT = const(0x0004)  # sound-level input outside the module's output range
STATUS_PM_SLEEPING = const(0x0008)  # laser and fan off between readings (pm_period >= 60 s)
STATUS_STORAGE_ERROR = const(0x0010)  # the last save of the settings failed
STATUS_FLAGS = (
    (STATUS_CLIMATE_FAULT, "climate_fault"),
    (STATUS_PM_FAULT, "pm_fault"),
    (STATUS_NOISE_FAULT, "noise_fault"),
    (STATUS_PM_SLEEPING, "pm_sleeping"),
    (STATUS_STORAGE_ERROR, "storage_error"),
)
FAULTS = STATUS_CLIMATE_FAULT | STATUS_PM_FAULT | STATUS_NOISE_FAULT

DEFAULTS = (
    ("climate_period", 10),
    ("pm_period", 60),
    ("noise_offset", 0),
    ("temperature_offset", 0),
)

# name, table, address, type, scale, unit, access, minimum, maximum, doc
_ROWS = (
    ("climate_period", HOLDING, 0, U16, 0, "s", RW, 1, 3600, ""),
    ("pm_period", HOLDING, 1, U16, 0, "s", RW, 2, 3600, ""),
    ("noise_offset", HOLDING, 2, S16, -1, "dB", RW, -200, 200, ""),
    ("temperature_offset", HOLDING, 3, S16, -2, "Cel", RW, -500, 500, ""),
    ("seq", INPUT, 0, U32, 0, None, RO, 0, 0xFFFFFFFF, ""),
    ("temperature", INPUT, 2, S16, -2, "Cel", RO, -4000, 8500, ""),
    ("humidity", INPUT, 3, U16, -2, "%RH", RO, 0, 10000, ""),
    ("pressure", INPUT, 4, U32, -1, "Pa", RO, 0, 1100000, ""),
    ("pm25", INPUT, 6, U16, -1, "ug/m3", RO, 0, 9999, ""),
    ("pm10", INPUT, 7, U16, -1, "ug/m3", RO, 0, 9999, ""),
    ("noise", INPUT, 8, U16, -1, "dB", RO, 0, 1500, ""),
    ("status", INPUT, 9, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("climate_errors", INPUT, 10, U16, 0, None, RO, 0, 0xFFFF, ""),
    ("pm_errors", INPUT, 11, U16, 0, None, RO, 0, 0xFFFF, ""),
)

# Poll classes (protocols.roles.kinds): the rest are measurements.
COUNTERS = "climate_errors pm_errors"
SETTINGS = "climate_period pm_period noise_offset temperature_offset"
IDENTITY = ""

REGISTERS = with_docs(_ROWS, globals().get("__doc__")) + common.rows()
del _ROWS

if sys.implementation.name == "micropython":
    __getattr__ = lazy_map(globals(), "env")  # on the node: no RegisterMap unless someone asks for MAP
else:
    from protocols.regmap import RegisterMap

    MAP = RegisterMap("env", REGISTERS, ROLE_ID)
