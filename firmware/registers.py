"""The node's register bank, laid out by its role's register table plus the role's blocks.

One ``array('H')`` per table (holding, input), sized by the table and the
blocks and allocated once. The firmware publishes values with
:meth:`RegisterBank.set`; the Modbus responder reads and writes through
:meth:`read` and :meth:`write` (the bank protocol of
``protocols.modbus.respond``).

The bank is built from a role's rows (``REGISTERS``, the tuples that
``protocols.regmap.RegisterMap`` validates), or from a ``RegisterMap``. From
rows it keeps only what a node needs (node roles use the integer types; F32,
for third-party devices, is the gateway's), packed: the names in a tuple, each one's place and
type in an ``array('I')``, and the bounds of the writable registers in
another (about 1.4 KB for a lamp on the unix port, where dictionaries of
names and of a tuple per writable row took 2.9 KB), instead of a
``Register`` object per row (about 290 bytes each). The write
check is the map's (``RegisterMap.check_write``: whole writable holding
registers, raw values within bounds; tests hold the two to the same answers).
``map`` is the role's ``RegisterMap`` (``protocols.roles.load``, on first use).

``mirrors``: ``(name, input address)`` pairs (a role's ``MIRRORS``): a read
of that input word answers the holding register ``name`` as it is now.

Blocks are runs of raw words after the table that are not registers (the
event window, a lamp's program table): ``add_block(start, count, bounds,
hook)`` for holding words, ``blocks=((table, start, count), ...)`` to size
the bank. Reads see them like any other word. A write must lie inside one
block (else exception 2), each word within ``bounds(address)`` (a ``(minimum,
maximum)`` pair; a negative minimum reads the word as s16; else exception 3);
``hook(address, count)`` then runs.

Writes are all or nothing: after the words are stored, the hook
(``on_write(names)`` for registers of the table, the block's hook for a
block) may refuse the write by raising ``ModbusException``; the bank then puts
the previous words back and the exception becomes the answer. ``broadcast``
is True while the responder executes a broadcast request (set by the slave),
so a hook can refuse what must never go to every node at once.
"""

from array import array

from protocols.errors import ModbusException

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


_HOLDING = const(3)  # protocols.regmap.HOLDING
_U16 = const(0)  # protocols.regmap type codes
_S16 = const(1)
_U32 = const(2)
_S32 = const(3)
_RW = const(1)
_EX_ILLEGAL_FUNCTION = const(1)
_EX_ILLEGAL_ADDRESS = const(2)
_EX_ILLEGAL_VALUE = const(3)
_FC_READ_HOLDING = const(3)
_FC_READ_INPUT = const(4)
_FC_WRITE_MULTIPLE = const(16)
_MAX_WRITE = const(123)


# The errors' texts, numbered by line: one string object in the node's RAM instead of one per text.
_TEXTS = (
    "block %d+%d is outside the bank (declare it in blocks=)\n"  # 0
    "blocks with more than 256 distinct bounds\n"  # 1
    "role %s has no register %r\n"  # 2
    "registers %d..%d\n"  # 3
    "address %d is not a writable register start\n"  # 4
    "%s: %s outside %s..%s\n"  # 5
    "write runs past the block\n"  # 6
    "word %d: %d outside %d..%d"  # 7
)


class RegisterBank:
    """Register words of one node; ``on_write(names)`` runs after a master's write is stored.

    ``source``: a role's rows (with ``role`` and ``role_id``), or a ``RegisterMap``.
    """

    files = None  # the node's Modbus file records (functions 20/21: updates), set by the node

    def __init__(self, source, on_write=None, blocks=(), role="", role_id=0, mirrors=()):
        if isinstance(source, tuple):
            rows = source
            self._regmap = None
        else:
            self._regmap = source
            role = source.role
            role_id = source.role_id
            rows = [(r.name, r.table, r.address, r.type, r.scale, r.unit, r.access, r.minimum, r.maximum, r.doc)
                    for r in source.registers]
        self.role = role
        self.role_id = role_id
        # The registers' names in a tuple (interned strings: the tuple holds pointers) and, at the same index, their
        # places in an array: address | type << 16 | (table is holding) << 20. A dictionary of them took twice the
        # heap (1.4 KB for a lamp's 51 registers on the unix port); a lookup scans the tuple, which compares
        # interned names by pointer.
        names = []
        writable = 0
        for row in rows:
            names.append(row[0])
            if row[1] == _HOLDING and row[6] == _RW:
                writable += 1
        self._names = tuple(names)
        names = None
        self._where = where = array("I", bytes(4 * len(self._names)))
        # Writable registers, what a write needs of their rows: per register three words (index in _names,
        # minimum, maximum; bounds as 32-bit patterns, signed by the register's type), where a tuple per row
        # and a dictionary by address took three times the heap.
        self._rw = rw = array("I", bytes(12 * writable))
        hold = 0
        inp = 0
        k = 0
        words = 0  # writable words: the most a write to the table can cover
        for i in range(len(rows)):
            row = rows[i]
            table, address, rtype = row[1], row[2], row[3]
            end = address + (2 if rtype == _U32 or rtype == _S32 else 1)
            if table == _HOLDING:
                hold = max(hold, end)
                if row[6] == _RW:
                    words += end - address
                    rw[k] = i
                    rw[k + 1] = row[7] & 0xFFFFFFFF
                    rw[k + 2] = row[8] & 0xFFFFFFFF
                    k += 3
            else:
                inp = max(inp, end)
            where[i] = address | rtype << 16 | (table == _HOLDING) << 20
        for table, start, count in blocks:
            if table == _HOLDING:
                hold = max(hold, start + count)
                words = max(words, count)  # a write lies inside one block
            else:
                inp = max(inp, start + count)
        self._mirrors = mirrors  # (name, input address): input words that read a holding register
        for _, at in mirrors:
            inp = max(inp, at + 1)
        self.holding = array("H", bytes(2 * hold))
        self.input = array("H", bytes(2 * inp))
        self.on_write = on_write
        self.broadcast = False
        self._blocks = []  # (start, count, index of each word's bounds in _pairs, hook), holding only
        self._pairs = array("h")  # minimum, maximum of each distinct pair of a block word's bounds
        # The words a write replaces, kept until its hook accepts it: as many as the longest write that can pass
        # the checks (whole writable registers, or inside one block), not the 123 a request may carry.
        self._undo = array("H", bytes(2 * min(words, _MAX_WRITE)))

    @property
    def map(self):
        """The role's ``protocols.regmap.RegisterMap`` (loaded on first use: it is large)."""
        if self._regmap is None:
            from protocols.roles import load

            self._regmap = load(self.role)
        return self._regmap

    def add_block(self, start, count, bounds, hook):
        """Accept writes to holding words ``start .. start+count-1`` (see the module docstring).

        The bounds are copied: each distinct pair once (a block's words repeat a few), and a byte per word
        that says which. The bank keeps no reference to ``bounds`` (nor, through it, to the module that
        defines it).
        """
        if start + count > len(self.holding):
            raise ValueError(_text(0) % (start, count))
        pairs = self._pairs
        index = bytearray(count)
        for i in range(count):
            lo, hi = bounds(start + i)
            j = 0
            while j < len(pairs) and (pairs[j] != lo or pairs[j + 1] != hi):
                j += 2
            if j == len(pairs):
                if j >= 512:
                    raise ValueError(_text(1))
                pairs.append(lo)
                pairs.append(hi)
            index[i] = j // 2
        self._blocks.append((start, count, index, hook))

    def _place(self, name):
        try:
            return self._where[self._names.index(name)]
        except ValueError:
            raise KeyError(_text(2) % (self.role, name)) from None

    def has(self, name):
        """True if the role has a register called ``name``."""
        return name in self._names

    def address(self, name):
        """Address of register ``name``."""
        return self._place(name) & 0xFFFF

    def bounds(self, name):
        """``(minimum, maximum)`` raw values a master may write to register ``name`` (None if read-only)."""
        p = self._place(name)
        k = self._writable(p & 0xFFFF) if p & 0x100000 else -1
        return self._bounds(k, (p >> 16) & 0xF) if k >= 0 and self._names[self._rw[k]] == name else None

    def _writable(self, address):
        # Index in _rw of the writable holding register starting at ``address``, or -1.
        rw = self._rw
        where = self._where
        for k in range(0, len(rw), 3):
            if where[rw[k]] & 0xFFFF == address:
                return k
        return -1

    def _bounds(self, k, t):
        # (minimum, maximum) of the writable register at index ``k`` of _rw, of type ``t``.
        rw = self._rw
        lo = rw[k + 1]
        hi = rw[k + 2]
        if t == _S16 or t == _S32:
            lo = lo - 0x100000000 if lo & 0x80000000 else lo
            hi = hi - 0x100000000 if hi & 0x80000000 else hi
        return lo, hi

    def set(self, name, raw):
        """Publish the raw value of register ``name`` (no bounds check: the firmware clamps)."""
        p = self._place(name)
        table = self.holding if p & 0x100000 else self.input
        a = p & 0xFFFF
        t = (p >> 16) & 0xF
        if t == _U32 or t == _S32:
            raw &= 0xFFFFFFFF
            table[a] = raw >> 16
            table[a + 1] = raw & 0xFFFF
        else:
            table[a] = raw & 0xFFFF

    def get(self, name):
        """The raw value of register ``name``."""
        p = self._place(name)
        return _decode(self.holding if p & 0x100000 else self.input, p & 0xFFFF, (p >> 16) & 0xF)

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
                function, _EX_ILLEGAL_ADDRESS, _text(3) % (address, address + count - 1)
            )
        for i in range(count):
            values_out[i] = table[address + i]
        for name, at in self._mirrors if table is self.input else ():
            if address <= at < address + count:
                values_out[at - address] = self.holding[self._place(name) & 0xFFFF]

    def check_write(self, address, values, count):
        """Raise ModbusException unless writing ``values[:count]`` at ``address`` is allowed (as the map's)."""
        end = address + count
        a = address
        while a < end:
            k = self._writable(a)
            name = self._names[self._rw[k]] if k >= 0 else None
            t = (self._where[self._rw[k]] >> 16) & 0xF if k >= 0 else 0
            width = 2 if t == _U32 or t == _S32 else 1
            if k < 0 or a + width > end:
                raise ModbusException(
                    _FC_WRITE_MULTIPLE, _EX_ILLEGAL_ADDRESS, _text(4) % a
                )
            raw = _decode(values, a - address, t)
            lo, hi = self._bounds(k, t)
            if not lo <= raw <= hi:
                raise ModbusException(
                    _FC_WRITE_MULTIPLE, _EX_ILLEGAL_VALUE, _text(5) % (name, raw, lo, hi)
                )
            a += width

    def write(self, address, values, count):
        """Store a master's write to holding registers: all of it or, on any problem, nothing."""
        block = None
        end = address + count
        for b in self._blocks:
            if b[0] <= address < b[0] + b[1]:
                block = b
                break
        if block is not None:
            if end > block[0] + block[1]:
                raise ModbusException(_FC_WRITE_MULTIPLE, _EX_ILLEGAL_ADDRESS, _text(6))
            first = address - block[0]
            for i in range(count):
                j = 2 * block[2][first + i]
                lo = self._pairs[j]
                hi = self._pairs[j + 1]
                v = values[i]
                if lo < 0 and v & 0x8000:
                    v -= 0x10000
                if not lo <= v <= hi:
                    raise ModbusException(
                        _FC_WRITE_MULTIPLE, _EX_ILLEGAL_VALUE, _text(7) % (address + i, v, lo, hi)
                    )
        else:
            self.check_write(address, values, count)
        table = self.holding
        undo = self._undo
        for i in range(count):
            undo[i] = table[address + i]
            table[address + i] = values[i]
        try:
            if block is not None:
                block[3](address, count)
            else:
                hook = self.on_write
                if hook is not None:
                    names = []
                    for a in range(address, end):
                        k = self._writable(a)
                        if k >= 0:
                            names.append(self._names[self._rw[k]])
                    hook(names)
        except Exception:
            for i in range(count):
                table[address + i] = undo[i]
            raise


def _decode(words, a, t):
    """Raw value of type ``t`` from ``words[a:]``."""
    w0 = words[a]
    if t == _S16:
        return w0 - 0x10000 if w0 & 0x8000 else w0
    if t == _U32 or t == _S32:
        raw = (w0 << 16) | words[a + 1]
        if t == _S32 and raw & 0x80000000:
            raw -= 0x100000000
        return raw
    return w0


def _text(n):
    return _TEXTS.split("\n")[n]
