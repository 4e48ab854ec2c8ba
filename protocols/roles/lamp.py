"""The street-light controller: its register map, the one source of truth.

Holding registers are what the gateway commands; input registers are what the
node measures. The gateway reads each table in one request.
"""

from protocols.regmap import BOOL, HOLDING, INPUT, RO, RW, S16, U16, U32, RegisterMap

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


ROLE_ID = const(1)
FIRMWARE_VERSION = const(0x0100)  # 1.0, major in the high byte

# Bits of the `status` register.
STATUS_LAMP_ON = const(0x0001)  # the relay is closed and the lamp draws power
STATUS_LAMP_FAILURE = const(0x0002)  # relay closed, level > 0, but no power drawn
STATUS_OVER_TEMPERATURE = const(0x0004)  # driver above its rated temperature
STATUS_SAFE_MODE = const(0x0008)  # configuration invalid: defaults in force
STATUS_STORAGE_ERROR = const(0x0010)  # the last write to flash failed
STATUS_FLAGS = (
    (STATUS_LAMP_ON, "lamp_on"),
    (STATUS_LAMP_FAILURE, "lamp_failure"),
    (STATUS_OVER_TEMPERATURE, "over_temperature"),
    (STATUS_SAFE_MODE, "safe_mode"),
    (STATUS_STORAGE_ERROR, "storage_error"),
)

# name, table, address, type, scale, unit, access, minimum, maximum, doc
REGISTERS = (
    ("dim_level", HOLDING, 0, U16, 0, "%", RW, 0, 100, "Target light level; 0 is off at the driver"),
    ("relay", HOLDING, 1, BOOL, 0, None, RW, 0, 1, "Lamp supply relay: 1 closed (on), 0 open"),
    ("seq", INPUT, 0, U32, 0, None, RO, 0, 0xFFFFFFFF, "Sample sequence number; never repeats, survives reboots"),
    ("power", INPUT, 2, U16, -1, "W", RO, 0, 0xFFFF, "Active power drawn by the lamp"),
    ("voltage", INPUT, 3, U16, -1, "V", RO, 0, 0xFFFF, "Supply voltage (RMS)"),
    ("current", INPUT, 4, U16, -3, "A", RO, 0, 0xFFFF, "Supply current (RMS)"),
    ("energy", INPUT, 5, U32, 0, "Wh", RO, 0, 0xFFFFFFFF, "Energy delivered since manufacture; monotonic, persisted"),
    ("temperature", INPUT, 7, S16, -1, "Cel", RO, -400, 1250, "Driver temperature"),
    ("status", INPUT, 8, U16, 0, None, RO, 0, 0xFFFF, "Status flags, see STATUS_FLAGS"),
    ("uptime", INPUT, 9, U32, 0, "s", RO, 0, 0xFFFFFFFF, "Seconds since the node booted"),
    ("role", INPUT, 11, U16, 0, None, RO, 0, 0xFFFF, "Role identifier: 1 for a lamp controller"),
    ("firmware", INPUT, 12, U16, 0, None, RO, 0, 0xFFFF, "Firmware version, major in the high byte"),
)

MAP = RegisterMap("lamp", REGISTERS, ROLE_ID)
