"""Modbus RTU, sans-IO: CRC, slave framer and responder, request builders (PDU and RTU frame).

The adapter (firmware UART loop, gateway transport, a test) owns the bytes and
the clock: it feeds what it receives, calls ``reset()`` on a 3.5-character
silence, and writes what the builders or :func:`respond` produce. On
MicroPython the request builders are imported on first use of one of their
names (a node never masters the bus).
"""

import sys

from protocols.errors import FrameError, ModbusException
from protocols.modbus.crc import crc16
from protocols.modbus.pdu import (
    EX_DEVICE_FAILURE,
    EX_ILLEGAL_ADDRESS,
    EX_ILLEGAL_FUNCTION,
    EX_ILLEGAL_VALUE,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    Request,
)
from protocols.modbus.slave import SlaveFramer, respond

_MASTER = (
    "build_read",
    "build_write_multiple",
    "build_write_single",
    "read_pdu",
    "rtu_frame",
    "write_multiple_pdu",
    "write_single_pdu",
)

if sys.implementation.name == "micropython":
    # A node only answers the bus: the request builders are imported when one of their names is asked
    # for (a test, a tool), never at boot; a node image does not carry them.
    def __getattr__(name):
        if name in _MASTER:
            return getattr(__import__("protocols.modbus.master", None, None, (name,)), name)
        raise AttributeError(name)

else:
    from protocols.modbus.master import (
        build_read,
        build_write_multiple,
        build_write_single,
        read_pdu,
        rtu_frame,
        write_multiple_pdu,
        write_single_pdu,
    )

__all__ = [
    "EX_DEVICE_FAILURE",
    "EX_ILLEGAL_ADDRESS",
    "EX_ILLEGAL_FUNCTION",
    "EX_ILLEGAL_VALUE",
    "FC_READ_HOLDING",
    "FC_READ_INPUT",
    "FC_WRITE_MULTIPLE",
    "FC_WRITE_SINGLE",
    "FrameError",
    "ModbusException",
    "Request",
    "SlaveFramer",
    "build_read",
    "build_write_multiple",
    "build_write_single",
    "crc16",
    "read_pdu",
    "respond",
    "rtu_frame",
    "write_multiple_pdu",
    "write_single_pdu",
]
