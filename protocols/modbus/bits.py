"""Coils and discrete inputs: the request and answer PDUs of functions 01, 02, 05 and 15.

PDUs only (function code first, no unit, no CRC or MBAP header): the same
bytes travel in an RTU frame and behind a Modbus TCP header, so each transport
adds its own envelope. Bits are packed first bit lowest, as the protocol packs
them. A master's module: a node never imports it (it costs a node about 2.5 KB
of heap on the unix port), which is why it is not part of ``pdu``.
"""

from protocols.modbus.pdu import (
    COIL_OFF,
    COIL_ON,
    FC_READ_COILS,
    FC_READ_DISCRETE,
    FC_WRITE_COIL,
    FC_WRITE_COILS,
    MAX_ADDRESS,
    MAX_READ_BITS,
    MAX_WRITE_BITS,
)


def _check_range(name, value, low, high):
    if type(value) is not int or not low <= value <= high:  # bool is no address or count
        raise ValueError("%s must be an int %d..%d, got %r" % (name, low, high, value))


def read_bits_pdu(function, address, count):
    """The PDU reading ``count`` (1..2000) coils (function 1) or discrete inputs (2) from ``address``."""
    if function not in (FC_READ_COILS, FC_READ_DISCRETE):
        raise ValueError("function must be 1 (read coils) or 2 (read discrete inputs), got %r" % (function,))
    _check_range("address", address, 0, MAX_ADDRESS)
    _check_range("count", count, 1, MAX_READ_BITS)
    if address + count > MAX_ADDRESS + 1:
        raise ValueError("bits %d..%d run past address 65535" % (address, address + count - 1))
    return bytes((function, address >> 8, address & 0xFF, count >> 8, count & 0xFF))


def write_coil_pdu(address, on):
    """The PDU switching one coil (function 5): ``on`` true sends 0xFF00, false 0x0000."""
    _check_range("address", address, 0, MAX_ADDRESS)
    word = COIL_ON if on else COIL_OFF
    return bytes((FC_WRITE_COIL, address >> 8, address & 0xFF, word >> 8, word & 0xFF))


def write_coils_pdu(address, bits):
    """The PDU setting 1..1968 coils from ``address`` on (function 15); ``bits`` are 0/1 or booleans."""
    _check_range("address", address, 0, MAX_ADDRESS)
    count = len(bits)
    if not 1 <= count <= MAX_WRITE_BITS:
        raise ValueError("bits must hold 1..%d coils, got %d" % (MAX_WRITE_BITS, count))
    if address + count > MAX_ADDRESS + 1:
        raise ValueError("coils %d..%d run past address 65535" % (address, address + count - 1))
    packed = pack_bits(bits)
    head = bytes((FC_WRITE_COILS, address >> 8, address & 0xFF, count >> 8, count & 0xFF, len(packed)))
    return head + packed


def pack_bits(bits):
    """0/1 values -> bytes, first bit in the lowest bit of the first byte (the Modbus order)."""
    out = bytearray((len(bits) + 7) // 8)
    for i in range(len(bits)):
        b = bits[i]
        if b is True or b == 1:
            out[i >> 3] |= 1 << (i & 7)
        elif not (b is False or b == 0):
            raise ValueError("bits[%d] must be 0 or 1, got %r" % (i, b))
    return bytes(out)


def unpack_bits(data, count, offset=0):
    """``count`` bits packed from ``data[offset]`` on -> list of 0/1 (the padding bits of the last byte ignored)."""
    if len(data) - offset < (count + 7) // 8:
        raise ValueError("%d bits need %d bytes, got %d" % (count, (count + 7) // 8, len(data) - offset))
    return [(data[offset + (i >> 3)] >> (i & 7)) & 1 for i in range(count)]


def read_bits_answer(pdu, function, count):
    """The bits of a read-bits answer PDU (function, byte count, packed bits); ValueError if it is not one.

    An exception answer (function | 0x80) is the caller's to recognise first.
    """
    size = (count + 7) // 8
    if len(pdu) != 2 + size or pdu[0] != function or pdu[1] != size:
        raise ValueError(
            "not an answer of %d bits to function %d: %d bytes starting %s"
            % (count, function, len(pdu), " ".join("%02x" % b for b in pdu[:3]))
        )
    return unpack_bits(pdu, count, 2)
