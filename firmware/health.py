"""Boot record: why the node booted, how often, and whether it is caught in a crash loop.

``boot.json`` in flash: ``{"boots", "crashes", "watchdogs", "bad", "last"}``.
``last`` is what the previous run wrote about itself: ``"run"`` at boot,
``"crash"`` when an unexpected error is about to reset the node, ``"reboot"``
before a commanded reset. So at the next boot:

- ``"crash"`` -> ``BOOT_CRASH``; ``"reboot"`` -> ``BOOT_COMMAND``;
- ``"run"`` (the run ended without a word: the power went, or the watchdog or
  the reset pin struck) -> what the chip says (``board.reset_cause()``:
  power on, watchdog, other).

Crash loop: ``bad`` counts boots after a crash or a watchdog reset since the
node last ran healthily for ``HEALTHY_MS`` (a minute). At ``LOOP_BOOTS`` (3) the
node boots in safe mode: the role does not run, the outputs are put in their
safe state, and the node still answers Modbus with the ``safe_mode_crash_loop``
flag. Safe mode holds across reboots and power cuts until a master writes
``command`` = ``CMD_LEAVE_SAFE_MODE`` (a fault that crashed the node three
times is worth a look). Power cuts neither count nor clear ``bad``: a
flickering supply is not a firmware fault.

Two small writes per boot (at boot, and once healthy); none in between.
"""


from firmware.storage import atomic_write, exists, read_json
from protocols.roles.common import BOOT_COMMAND, BOOT_CRASH, BOOT_POWER_ON, BOOT_WATCHDOG

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


LOOP_BOOTS = const(3)
HEALTHY_MS = const(60000)


class BootRecord:
    """The persisted boot history; ``cause``: the chip's reset cause (``BOOT_*``) for a run that ended silently."""

    def __init__(self, path="boot.json", cause=BOOT_POWER_ON):
        self.path = path
        self.error = False
        d = read_json(path)
        if d is None:
            d = read_json(path + ".tmp")  # a rename cut short on FAT
        if d is None:
            d = {}
            self.error = exists(path)
        self.boots = _count(d, "boots") + 1
        self.crashes = _count(d, "crashes")
        self.watchdogs = _count(d, "watchdogs")
        self.bad = _count(d, "bad")
        last = d.get("last")
        if last == "crash":
            self.reason = BOOT_CRASH
        elif last == "reboot":
            self.reason = BOOT_COMMAND
        elif d:
            self.reason = cause
        else:
            self.reason = BOOT_POWER_ON  # first boot
        if self.reason == BOOT_CRASH:
            self.crashes += 1
        if self.reason == BOOT_WATCHDOG:
            self.watchdogs += 1
        if self.reason == BOOT_CRASH or self.reason == BOOT_WATCHDOG:
            self.bad += 1
        self.crash_loop = self.bad >= LOOP_BOOTS
        self.healthy = False
        self._save("run")

    def _save(self, last):
        text = '{"boots": %d, "crashes": %d, "watchdogs": %d, "bad": %d, "last": "%s"}' % (
            self.boots, self.crashes, self.watchdogs, self.bad, last)
        try:
            atomic_write(self.path, text)
        except OSError:
            self.error = True
            return
        self.error = False

    def ran(self, uptime_ms):
        """Call every sample: after ``HEALTHY_MS`` outside safe mode, the crash history is cleared."""
        if self.healthy or uptime_ms < HEALTHY_MS:
            return
        self.healthy = True
        if self.bad and not self.crash_loop:
            self.bad = 0
            self._save("run")

    def crashed(self):
        """An unexpected error is about to reset the node."""
        self._save("crash")

    def rebooting(self):
        """A commanded reset follows."""
        self._save("reboot")

    def leave_safe_mode(self):
        """Forget the crash history (the next boot runs the role again); a commanded reset follows."""
        self.bad = 0
        self.crash_loop = False
        self._save("reboot")


def _count(d, key):
    v = d.get(key, 0)
    return v if isinstance(v, int) and v >= 0 else 0
