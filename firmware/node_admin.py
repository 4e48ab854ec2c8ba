"""A master's rarer writes to the registers every node has: time-zone and clock settings, commands.

Imported by :class:`firmware.node.Node` for such a write and released after it
(:mod:`firmware.lazy`): none of this code needs to stay in RAM.

- ``tz_offset``, ``clock_max_age``: saved in ``node.json`` (atomically, only
  when they change), an ``EV_SETTINGS`` event;
- ``command``: ``CMD_REBOOT`` and ``CMD_LEAVE_SAFE_MODE`` save counters and
  events, write the boot record and reset the board once the answer is out;
  ``CMD_SAVE`` saves; ``CMD_APPLY_UNIT`` (never by broadcast) persists the
  staged ``unit`` in ``config.json`` and switches the slave to it once the
  answer (on the old unit) is out.
"""

from firmware.node import (  # the node's copies: the common table itself may have left RAM
    CMD_APPLY_UNIT,
    CMD_LEAVE_SAFE_MODE,
    CMD_NONE,
    CMD_REBOOT,
    EV_COMMAND,
    EV_SETTINGS,
    EV_UNIT_CHANGED,
)
from firmware.storage import atomic_write
from protocols.errors import ModbusException

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_FC_WRITE = const(16)
_EX_ILLEGAL_VALUE = const(3)
_EX_DEVICE_FAILURE = const(4)


def prefs(node, names):
    """Save and apply ``tz_offset`` / ``clock_max_age`` as written (ModbusException if the flash refuses)."""
    bank = node.bank
    tz = bank.get("tz_offset")
    age = bank.get("clock_max_age")
    if tz == node.tz_offset and age == node.clock_max_age:
        return
    try:
        atomic_write(node.flash_path("node.json"), '{"tz_offset": %d, "clock_max_age": %d}' % (tz, age))
    except OSError:
        node.prefs_error = True
        raise ModbusException(_FC_WRITE, _EX_DEVICE_FAILURE, "cannot save node.json") from None
    node.prefs_error = False
    node.tz_offset = tz
    node.clock_max_age = age
    node.clock.max_age_s = age * 60
    node.events.log(EV_SETTINGS, bank.address("tz_offset" if "tz_offset" in names else "clock_max_age"))


def command(node, cmd):
    """Execute ``command`` register value ``cmd`` (see the module docstring)."""
    bank = node.bank
    bank.set("command", CMD_NONE)
    if cmd == CMD_NONE:
        return
    slave = node.slave
    if cmd == CMD_APPLY_UNIT:
        if bank.broadcast:
            raise ModbusException(_FC_WRITE, _EX_ILLEGAL_VALUE, "a unit is never set by broadcast")
        unit = bank.get("unit")
        if unit == node.config.unit:
            return
        from firmware import config

        try:
            config.save_unit(node.flash_path("config.json"), node.config, unit)
        except OSError:
            raise ModbusException(_FC_WRITE, _EX_DEVICE_FAILURE, "cannot save config.json") from None
        node.config.unit = unit
        node.events.log(EV_UNIT_CHANGED, unit)
        if slave is None:
            return  # no bus (a battery BLE node): the unit is kept for when it has one
        framer = slave.framer

        def switch():
            framer.unit = unit

        slave.after_answer = switch
        return
    node.events.log(EV_COMMAND, cmd)
    node.save()
    if cmd == CMD_REBOOT:
        node.boot.rebooting()
    elif cmd == CMD_LEAVE_SAFE_MODE:
        node.boot.leave_safe_mode()
    else:
        return
    if slave is not None:
        slave.after_answer = node.board.reset
    else:  # no bus: the GATT service resets the node after its answer (Node.pending_reset)
        node.reset_after = node.board.reset
