"""A role's settings (some of its holding registers), kept in the board's persistent store.

The board stores small records by key (``persist_read(key)`` /
``persist_write(key, data)``: an NVS blob on the ESP32, a file replaced by
rename on the virtual board); a record is written whole or not at all.

A settings record is the raw words of the named registers (one-word
registers: U16, S16, BOOL), in the order given, followed by their CRC-16 (Modbus CRC of the words): ``2 * (n + 1)``
bytes. At boot a record that is missing, of another length, with a bad CRC or
with a value outside its register's bounds is ignored as a whole and the
defaults apply (``from_flash`` False).

A master's write is already checked against the bounds by the register bank;
the record is saved ``_SAVE_DELAY_MS`` after the last write of a burst, so a
gateway writing several registers one by one costs one flash write.
"""

import struct
import time

from protocols.modbus.crc import crc16

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


if False:  # type checkers only: the board this image is built for (tools/check_esp32.py)
    import board

_SAVE_DELAY_MS = const(2000)
_RETRY_MS = const(10000)


class Settings:
    """Persisted holding registers of one role: ``defaults`` is ``((name, raw), ...)``."""

    def __init__(self, board: "board.Board", bank, key, defaults):
        self.board = board
        self.bank = bank
        self.key = key
        self.names = tuple(name for name, _ in defaults)
        self._defaults = defaults
        n = len(self.names)
        self._fmt = ">%dH" % (n + 1)
        self._body_fmt = ">%dH" % n
        self.from_flash = False
        self.error = False
        self.saves = 0
        self._due = None  # ticks_ms when the pending save is due, or None

    def load(self):
        """Publish the stored settings (or the defaults) into the bank; True if they came from flash."""
        words = self._read()
        self.from_flash = words is not None
        if words is None:
            for name, raw in self._defaults:
                self.bank.set(name, raw)
        return self.from_flash

    def _read(self):
        try:
            data = self.board.persist_read(self.key)
        except OSError:
            return None
        n = len(self.names)
        if data is None or len(data) != 2 * (n + 1):
            return None
        words = struct.unpack(self._fmt, data)
        if crc16(data[: 2 * n]) != words[n]:
            return None
        # Through the bank, which decodes each word by its register's type, then the bounds.
        bank = self.bank
        ok = True
        for i in range(n):
            name = self.names[i]
            bank.set(name, words[i])
            lo, hi = _bounds(bank, name)
            if not lo <= bank.get(name) <= hi:
                ok = False
        return words[:n] if ok else None

    def touches(self, names):
        """True if the written ``names`` include one of these settings."""
        for name in names:
            if name in self.names:
                return True
        return False

    def changed(self, now_ms):
        """A master wrote some of these settings: save them once writes pause."""
        self._due = time.ticks_add(now_ms, _SAVE_DELAY_MS)

    def tick(self, now_ms):
        """Save if due; call once per sample."""
        due = self._due
        if due is None or time.ticks_diff(now_ms, due) < 0:
            return
        words = [self.bank.get(name) & 0xFFFF for name in self.names]
        body = struct.pack(self._body_fmt, *words)
        record = body + struct.pack(">H", crc16(body))
        try:
            self.board.persist_write(self.key, record)
        except OSError:
            self.error = True
            self._due = time.ticks_add(now_ms, _RETRY_MS)
            return
        self.error = False
        self._due = None
        self.saves += 1


def _bounds(bank, name):
    """``(minimum, maximum)`` of a writable register, from either kind of register bank."""
    bounds = getattr(bank, "bounds", None)
    if bounds is not None:
        return bounds(name)
    reg = bank.map[name]
    return reg.minimum, reg.maximum
