"""What a Modbus master sends: request PDUs, and their RTU frames.

The PDU (function code and fields) is what Modbus TCP carries behind its MBAP
header; :func:`rtu_frame` adds the unit and the CRC for a serial line. The
gateway reads responses with pymodbus (RTU) or its own TCP bus; a node never
masters the bus, so on MicroPython this module is imported only on demand.
"""

from protocols.modbus.crc import put_crc
from protocols.modbus.pdu import (
    BROADCAST,
    FC_READ_HOLDING,
    FC_READ_INPUT,
    FC_READ_WRITE_MULTIPLE,
    FC_WRITE_MULTIPLE,
    FC_WRITE_SINGLE,
    MAX_ADDRESS,
    MAX_READ_COUNT,
    MAX_RW_WRITE_COUNT,
    MAX_UNIT,
    MAX_VALUE,
    MAX_WRITE_COUNT,
)


def _check(name, value, low, high):
    if type(value) is not int or not low <= value <= high:  # bool is no register field
        raise ValueError("%s must be an int %d..%d, got %r" % (name, low, high, value))


def read_pdu(function, address, count):
    """Return the PDU (function code and fields: no unit, no CRC) reading ``count`` registers.

    ``function`` is 3 (holding) or 4 (input); ``count`` 1..125. Modbus TCP
    sends it behind its MBAP header; :func:`build_read` frames it for RTU.
    """
    if function not in (FC_READ_HOLDING, FC_READ_INPUT):
        raise ValueError(
            "function must be 3 (read holding) or 4 (read input), got %r" % (function,)
        )
    _check("address", address, 0, MAX_ADDRESS)
    _check("count", count, 1, MAX_READ_COUNT)
    return bytes((function, address >> 8, address & 0xFF, 0, count))


def write_single_pdu(address, value):
    """Return the PDU writing ``value`` (0..65535) to holding ``address`` (function 6)."""
    _check("address", address, 0, MAX_ADDRESS)
    _check("value", value, 0, MAX_VALUE)
    return bytes((FC_WRITE_SINGLE, address >> 8, address & 0xFF, value >> 8, value & 0xFF))


def write_multiple_pdu(address, values):
    """Return the PDU writing 1..123 ``values`` from holding ``address`` on (function 16)."""
    _check("address", address, 0, MAX_ADDRESS)
    count = len(values)
    if not 1 <= count <= MAX_WRITE_COUNT:
        raise ValueError("values must hold 1..%d registers, got %d" % (MAX_WRITE_COUNT, count))
    out = bytearray(6 + 2 * count)
    out[0] = FC_WRITE_MULTIPLE
    out[1] = address >> 8
    out[2] = address & 0xFF
    out[3] = 0
    out[4] = count
    out[5] = 2 * count
    k = 6
    for i in range(count):
        v = values[i]
        if type(v) is not int or not 0 <= v <= MAX_VALUE:
            raise ValueError("values[%d] must be an int 0..65535, got %r" % (i, v))
        out[k] = v >> 8
        out[k + 1] = v & 0xFF
        k += 2
    return bytes(out)


def read_write_multiple_pdu(read_address, read_count, write_address, values):
    """Return the PDU of function 23: write 1..121 ``values`` from holding ``write_address`` on, then read.

    The slave answers the ``read_count`` (1..125) holding registers from
    ``read_address`` as they are after the write.
    """
    _check("read_address", read_address, 0, MAX_ADDRESS)
    _check("read_count", read_count, 1, MAX_READ_COUNT)
    if not 1 <= len(values) <= MAX_RW_WRITE_COUNT:
        raise ValueError("values must hold 1..%d registers, got %d" % (MAX_RW_WRITE_COUNT, len(values)))
    write = write_multiple_pdu(write_address, values)  # 16's fields after its code are 23's write part
    head = bytes((FC_READ_WRITE_MULTIPLE, read_address >> 8, read_address & 0xFF, read_count >> 8, read_count & 0xFF))
    return head + write[1:]


def rtu_frame(unit, pdu):
    """Return the RTU frame of ``pdu`` for ``unit`` (0 broadcast, 1..247): unit, PDU, CRC."""
    _check("unit", unit, BROADCAST, MAX_UNIT)
    out = bytearray(len(pdu) + 3)
    out[0] = unit
    out[1 : len(pdu) + 1] = pdu
    put_crc(out, len(pdu) + 1)
    return bytes(out)


def build_read(unit, function, address, count):
    """Return the RTU frame (CRC included) reading ``count`` registers from ``address``.

    ``function`` is 3 (holding) or 4 (input); ``unit`` 0..247 (0 reaches every
    node but none answers: slaves ignore broadcast reads); ``count`` 1..125.
    """
    _check("unit", unit, BROADCAST, MAX_UNIT)
    return rtu_frame(unit, read_pdu(function, address, count))


def build_write_single(unit, address, value):
    """Return the RTU frame (CRC included) writing ``value`` (0..65535) to holding ``address``."""
    _check("unit", unit, BROADCAST, MAX_UNIT)
    return rtu_frame(unit, write_single_pdu(address, value))


def build_write_multiple(unit, address, values):
    """Return the RTU frame (CRC included) writing 1..123 ``values`` from ``address`` on."""
    _check("unit", unit, BROADCAST, MAX_UNIT)
    return rtu_frame(unit, write_multiple_pdu(address, values))


def build_read_write_multiple(unit, read_address, read_count, write_address, values):
    """Return the RTU frame (CRC included) of function 23 (see :func:`read_write_multiple_pdu`).

    ``unit`` is 1..247: slaves execute no 23 sent to broadcast (it reads).
    """
    _check("unit", unit, 1, MAX_UNIT)
    return rtu_frame(unit, read_write_multiple_pdu(read_address, read_count, write_address, values))
