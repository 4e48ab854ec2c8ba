"""The node's register bank, laid out by its role's register map.

One ``array('H')`` per table (holding, input), sized by the map and allocated
once. The firmware publishes values with :meth:`RegisterBank.set`; the Modbus
responder reads and writes through :meth:`read` and :meth:`write` (the bank
protocol of ``protocols.modbus.respond``).
"""

from array import array

from protocols.errors import ModbusException
from protocols.regmap import F32, HOLDING, INPUT

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_EX_ILLEGAL_FUNCTION = const(1)
_EX_ILLEGAL_ADDRESS = const(2)
_FC_READ_HOLDING = const(3)
_FC_READ_INPUT = const(4)


class RegisterBank:
    """Register words of one node; ``on_write(names)`` runs after a master's write is stored."""

    def __init__(self, regmap, on_write=None):
        self.map = regmap
        self.holding = array("H", bytes(2 * regmap.size(HOLDING)))
        self.input = array("H", bytes(2 * regmap.size(INPUT)))
        self.on_write = on_write

    def _table(self, reg):
        return self.holding if reg.table == HOLDING else self.input

    def set(self, name, raw):
        """Publish the raw value of register ``name`` (no bounds check: the firmware clamps)."""
        reg = self.map[name]
        table = self._table(reg)
        a = reg.address
        if reg.width == 1:
            table[a] = raw & 0xFFFF
        elif reg.type == F32:
            hi, lo = reg.words(raw)
            table[a] = hi
            table[a + 1] = lo
        else:
            raw &= 0xFFFFFFFF
            table[a] = raw >> 16
            table[a + 1] = raw & 0xFFFF

    def get(self, name):
        """The raw value of register ``name``."""
        reg = self.map[name]
        return reg.from_words(self._table(reg), reg.address)

    def read(self, function, address, count, values_out):
        """Copy ``count`` words from ``address`` (table per ``function``) to ``values_out``."""
        if function == _FC_READ_HOLDING:
            table = self.holding
        elif function == _FC_READ_INPUT:
            table = self.input
        else:
            raise ModbusException(function, _EX_ILLEGAL_FUNCTION)
        if address + count > len(table):
            raise ModbusException(
                function, _EX_ILLEGAL_ADDRESS, "registers %d..%d" % (address, address + count - 1)
            )
        for i in range(count):
            values_out[i] = table[address + i]

    def write(self, address, values, count):
        """Store a master's write to holding registers: all of it or, on any problem, nothing."""
        self.map.check_write(address, values, count)
        table = self.holding
        for i in range(count):
            table[address + i] = values[i]
        hook = self.on_write
        if hook is not None:
            names = []
            end = address + count
            for reg in self.map.registers:
                if reg.table == HOLDING and address <= reg.address < end:
                    names.append(reg.name)
            hook(names)
