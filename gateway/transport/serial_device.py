"""Why a serial device cannot be used, in words an operator can act on.

pymodbus reports a failed open as ``False`` and the reason only in its own log,
so "the adapter is not there" and "this user may not open it" would read the
same. :func:`device_problem` tells them apart from the device node itself; the
RTU bus puts its answer into its error (:func:`open_client`), and ``streetedge
check`` prints it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import termios
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.service.config import BusConfig
from gateway.transport.bus import BusUnavailable

if TYPE_CHECKING:  # pymodbus loads with the RTU bus only (gateway.transport.bus.open_bus)
    from pymodbus.client import AsyncModbusSerialClient


def current_user() -> str:
    """The name of the user this process runs as (not $USER, which su and setpriv may leave behind)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def device_problem(device: str, *, try_open: bool = False) -> str | None:
    """Why this process cannot use the serial device ``device``, or None if nothing is visibly wrong.

    ``try_open``: also open it (read-write, without becoming its controlling terminal) to catch what the
    permissions do not show (busy, I/O error); for a bus that failed to open, not for a line in use.
    """
    try:
        info = Path(device).stat()
    except FileNotFoundError:
        return "it does not exist (adapter unplugged, or another name: see ls -l /dev/serial/by-id/)"
    except OSError as exc:
        return f"cannot stat it: {exc.strerror}"
    if not stat.S_ISCHR(info.st_mode):
        return "it is not a character device (a serial adapter is /dev/ttyUSB*, /dev/ttyACM* or /dev/ttyS*)"
    if not os.access(device, os.R_OK | os.W_OK):
        try:
            group = grp.getgrgid(info.st_gid).gr_name
        except KeyError:
            group = str(info.st_gid)
        return (f"no permission to read and write it as user {current_user()} (it belongs to group {group}): "
                f"add the user to that group (usermod -aG {group} USER); the packaged unit runs with "
                f"SupplementaryGroups=dialout")
    if try_open:
        try:
            os.close(os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK))
        except OSError as exc:
            return f"cannot open it: [Errno {exc.errno}] {exc.strerror}"
    return None


async def open_client(cfg: BusConfig, response_timeout: float) -> AsyncModbusSerialClient:
    """A pymodbus client connected to the bus's serial device, or BusUnavailable saying why not.

    pymodbus retries nothing and never reconnects by itself: the RTU bus retries with backoff (the line
    free in between) and reopens the device on demand.
    """
    from pymodbus.client import AsyncModbusSerialClient

    client = AsyncModbusSerialClient(
        port=cfg.device, baudrate=cfg.baud, bytesize=8, parity=cfg.parity, stopbits=cfg.stopbits,
        timeout=response_timeout, retries=0, reconnect_delay=0,
    )
    try:
        opened = await client.connect()
    except Exception as exc:  # pyserial/termios errors surface raw from connect()
        client.close()
        hint = ""
        if cfg.parity != "N" and isinstance(exc, termios.error):
            hint = " (pseudo-terminals, as on the virtual street, accept parity N only)"
        raise BusUnavailable(
            f"bus {cfg.name}: cannot open {cfg.device} ({cfg.baud} 8{cfg.parity}{cfg.stopbits}): {exc}{hint}"
        ) from exc
    if not opened:
        client.close()
        reason = device_problem(cfg.device, try_open=True) or "the serial driver refused it"
        raise BusUnavailable(f"bus {cfg.name}: cannot open {cfg.device}: {reason}")
    return client
