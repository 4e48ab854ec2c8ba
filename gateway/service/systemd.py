"""systemd integration: readiness, watchdog pings, reload and stop notices (``sd_notify``).

The protocol is one datagram of ``KEY=value`` lines sent to the unix socket
named by ``$NOTIFY_SOCKET`` (a leading ``@`` means the abstract namespace).
That is all of it, so it is written here rather than taken from a library:
``sdnotify`` has not been released since 2017 and drops errors silently, and
``systemd-python``/``cysystemd`` link libsystemd (a C build and a system
package for a dozen lines of socket code). Outside systemd (no
``$NOTIFY_SOCKET``) every call does nothing.

Watchdog: with ``WatchdogSec=`` in the unit, systemd sets ``$WATCHDOG_USEC``
(and ``$WATCHDOG_PID``); :func:`watchdog_interval` says how often to ping (half
the period) and :func:`keep_alive` pings from the event loop, so a loop that
hangs stops the pings and systemd restarts the daemon.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class Notifier:
    """Sends state changes to the service manager.

    Args:
        address: the notify socket path; ``$NOTIFY_SOCKET`` when omitted (None: no manager).
    """

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self.address = address or None
        self._sock: socket.socket | None = None
        if self.address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether a service manager listens."""
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False (logged) if it could not be sent."""
        if self._sock is None or self.address is None:
            return False
        target = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            self._sock.sendto("\n".join(lines).encode(), target)
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """The daemon is up (``READY=1``)."""
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        """A reload starts (``RELOADING=1`` with the monotonic time systemd asks for)."""
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        """The daemon is shutting down (``STOPPING=1``)."""
        return self.notify("STOPPING=1")

    def status(self, text: str) -> bool:
        """A one-line status for ``systemctl status``."""
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        """Still alive (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec``), or None when no watchdog is set for us."""
    env = os.environ if environ is None else environ
    usec = env.get("WATCHDOG_USEC")
    if not usec:
        return None
    pid = env.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process
    try:
        period = int(usec) / 1e6
    except ValueError:
        log.warning("ignoring WATCHDOG_USEC=%r", usec)
        return None
    return period / 2 if period > 0 else None


async def keep_alive(notifier: Notifier, interval: float, healthy: Callable[[], bool] = lambda: True) -> None:
    """Ping the watchdog every ``interval`` seconds while ``healthy()``; runs until cancelled."""
    while True:
        if healthy():
            notifier.watchdog()
        else:
            log.warning("not pinging the systemd watchdog: the gateway is not healthy")
        await asyncio.sleep(interval)
