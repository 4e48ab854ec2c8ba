"""What the water meter and the environment node share: settings, the sample's tail, alarm events.

Both roles keep their settings in holding registers persisted by
:class:`~firmware.settings.Settings` (a write is saved once writes pause), and
end every sample the same way: the sample sequence number, the due save of the
settings, the ``status`` register, and one ``EV_ALARM_ON``/``EV_ALARM_OFF``
event per changed status bit that is an alarm (once the node's event log is
wired in: ``self.events``).

The node builds the register bank from the rows of the role's table
(:func:`registers`) and then releases the table module: a role module keeps
copies of the numbers it uses (``RELEASE_TABLES``), never the module.
"""

import os
import time

from firmware.settings import Settings

if False:  # type checkers only: the board this image is built for (tools/check_esp32.py)
    import board


def registers(role):
    """The register rows of ``role`` (``protocols.roles.<role>.REGISTERS``), for the node's bank."""
    return __import__("protocols.roles." + role, None, None, ("REGISTERS",)).REGISTERS


class SettingsRole:
    """A role whose settings are the holding registers ``defaults`` names, saved under ``key``.

    A subclass provides ``sample(now_ms)`` (ending with :meth:`finish`) and may
    override :meth:`settings_written`.
    """

    def __init__(self, board: "board.Board", bank, store, key, defaults, safe_mode=False):
        self.board = board
        self.bank = bank
        self.store = store
        self.safe_mode = safe_mode
        self.events = None  # the node's event log, when it has one
        self.settings = Settings(board, bank, key, defaults)
        self.status = 0

    def on_write(self, names):
        """A master wrote holding registers ``names``: persist the settings among them (once writes pause)."""
        settings = self.settings
        if settings.touches(names):
            now = time.ticks_ms()
            settings.changed(now)
            self.settings_written(names, now)

    def settings_written(self, names, now_ms):
        """Settings ``names`` were written at ``now_ms`` (saved later): a role acts on them here."""

    def start_radio(self, role):
        """Advertise over BLE (:mod:`firmware.ble_beacon`) if the board has a radio and the flash ``ble.json``."""
        try:
            os.stat(self.board.flash_dir + "/ble.json")
        except OSError:
            return  # no BLE here: the beacon's code (about 16 KB on the unix port) stays out of the heap
        if getattr(self.board, "ble", None) is None:  # asked only now: a board may build its radio part for it
            return
        from firmware import ble_beacon

        self.beacon = ble_beacon.start(self.board, self.bank, role)

    def finish(self, now_ms, status, quiet, storage_error):
        """End a sample: ``seq``, the due settings save, then ``status``.

        ``storage_error`` is the role's status bit for a failed save (added when
        the settings' last save failed); bits in ``quiet`` are not alarms.
        """
        settings = self.settings
        settings.tick(now_ms)
        if settings.error:
            status |= storage_error
        bank = self.bank
        bank.set("seq", self.store.next_seq())
        old = self.status
        self.status = status
        bank.set("status", status)
        events = self.events
        if events is not None:
            events.alarms((old ^ status) & ~quiet, status)


def clamp(x, lo, hi):
    """``x`` within ``lo..hi``."""
    return lo if x < lo else hi if x > hi else x


def debounce(count, condition, samples):
    """Consecutive-sample counter: up to ``samples`` while ``condition`` holds, down to 0 while not."""
    if condition:
        return count + 1 if count < samples else samples
    return count - 1 if count > 0 else 0
