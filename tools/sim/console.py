"""A virtual board's USB console: MicroPython on a pty, as a field engineer's laptop sees a real board.

A real ESP32 on its USB serial port: at reset MicroPython runs ``main.py`` from
its flash; a Ctrl-C on the serial line interrupts it (the UART driver raises
KeyboardInterrupt) and leaves the REPL, where ``mpremote`` works (raw REPL,
file copies, exec); ``machine.reset()`` boots it again. A board with nothing in
its flash sits at the REPL. The virtual board does the same with the unix
port, so provisioning is tested exactly as it is run in the field::

    python -m tools.sim.console --flash DIR --link DIR/console [--heapsize 128K]

- the console is a pseudo-terminal whose path is linked at ``--link``: open it
  with ``mpremote connect <link> resume ...`` (``resume``: the unix port has no
  soft reset) or ``streetedge provision --port <link>``;
- the interpreter runs with the flash folder as working directory and
  ``MICROPYPATH=.:.frozen`` (what was copied to the flash root imports, as on
  the board), ``main.py`` if present, else the REPL;
- Ctrl-C (0x03) from the host while ``main.py`` runs sends it SIGINT
  (KeyboardInterrupt); when it has ended the board is at the REPL;
- when the interpreter exits otherwise (the unix port's ``machine`` has no
  ``reset``, so ``sys.exit()`` at the REPL stands for it; or ``main.py``'s own
  reset after a fault), the board boots again;
- everything the board prints is also appended to ``node.log`` in its flash.

The supervisor ends on SIGTERM (stopping the interpreter) or when its parent
dies (``--watch-parent``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
import tty
from pathlib import Path

from tools.sim.code_slots import active_slot_bytes
from tools.sim.street import heap_bytes, micropython_path

CTRL_C = 0x03


class Console:
    """The supervisor: one interpreter at a time on the board's console, bytes relayed to the host's pty."""

    def __init__(self, flash: Path, link: Path, heapsize: str) -> None:
        self.flash = flash
        self.link = link
        self.heapsize = heapsize
        self.board_fd, board_tty = pty.openpty()  # the interpreter's stdin/stdout
        self.host_fd, host_tty = pty.openpty()  # what the host's tools open
        tty.setraw(board_tty)  # no newline translation: mpremote matches exact bytes
        tty.setraw(host_tty)
        self._board_tty = board_tty
        self._host_tty = host_tty  # kept open: the host may close and reopen its side
        self.proc: subprocess.Popen[bytes] | None = None
        self.running_main = False
        self.stopping = False
        self.log = (flash / "node.log").open("ab")

    def boot(self) -> None:
        """Reset: run main.py if the flash has one, else sit at the REPL."""
        self.start(main=(self.flash / "main.py").exists())

    def start(self, *, main: bool) -> None:
        """Start the interpreter on the console: ``main.py`` or the bare REPL."""
        env = dict(os.environ, MICROPYPATH=".:.frozen")
        # As on the street: the code slot's image is a buffer in the heap here, mapped flash on a chip.
        heap = heap_bytes(self.heapsize) + (active_slot_bytes(self.flash) if main else 0)
        argv = [micropython_path(), "-X", f"heapsize={heap}"] + (["main.py"] if main else [])
        self.proc = subprocess.Popen(argv, cwd=self.flash, env=env, stdin=self._board_tty,
                                     stdout=self._board_tty, stderr=self._board_tty, start_new_session=True)
        self.running_main = main

    def serve(self, watch_parent: bool) -> None:
        """Relay bytes both ways and keep the board alive until told to stop."""
        parent = os.getppid()
        self.boot()
        while not self.stopping:
            ready, _, _ = select.select([self.board_fd, self.host_fd], [], [], 0.1)
            if self.board_fd in ready:
                data = _read(self.board_fd)
                if data:
                    os.write(self.host_fd, data)
                    self.log.write(data)
                    self.log.flush()
            if self.host_fd in ready:
                self._from_host(_read(self.host_fd))
            assert self.proc is not None
            code = self.proc.poll()
            if code is not None and not self.stopping:
                # main.py interrupted: the REPL; anything else (a reset, a crash): boot again
                if self.running_main and code == 130:
                    self.start(main=False)
                else:
                    self.boot()
            if watch_parent and os.getppid() != parent:
                break
        self.stop()

    def _from_host(self, data: bytes) -> None:
        if self.running_main and CTRL_C in data and self.proc is not None and self.proc.poll() is None:
            # the board's UART driver turns Ctrl-C into KeyboardInterrupt; the rest waits for the REPL
            self.proc.send_signal(signal.SIGINT)
            data = data.replace(bytes([CTRL_C]), b"")
        if data:
            os.write(self.board_fd, data)

    def stop(self) -> None:
        """Stop the interpreter (SIGTERM, then SIGKILL)."""
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # the other side closed for a moment (the host's tool exited)
        return b""


def main(argv: list[str] | None = None) -> int:
    """Run one virtual board's console until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flash", required=True, help="the board's flash folder (its working directory)")
    parser.add_argument("--link", required=True, help="path of a symlink to the console's pty")
    parser.add_argument("--heapsize", default="128K", help="MicroPython heap (the ESP32 budget by default)")
    parser.add_argument("--watch-parent", action="store_true", help="exit when the parent process dies")
    args = parser.parse_args(argv)
    flash = Path(args.flash).resolve()
    flash.mkdir(parents=True, exist_ok=True)
    console = Console(flash, Path(args.link), args.heapsize)
    signal.signal(signal.SIGTERM, lambda *_: setattr(console, "stopping", True))
    link = Path(args.link)
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(os.ttyname(console._host_tty))
    print(f"console {os.ttyname(console._host_tty)} linked at {link}", flush=True)
    try:
        console.serve(args.watch_parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def start_console(flash: Path, wiring: dict[str, object], *, heapsize: str = "128K",
                  timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], Path]:
    """Start a virtual board's console supervisor on ``flash`` with ``wiring`` as its ``sim.json``.

    Returns the supervisor process (stop it by PID: SIGTERM) and the console's link path.
    """
    import json

    from tools.sim.street import REPO, StreetError

    flash.mkdir(parents=True, exist_ok=True)
    (flash / "sim.json").write_text(json.dumps(wiring))
    link = flash.parent / f"{flash.name}.console"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.sim.console", "--flash", str(flash), "--link", str(link),
         "--heapsize", heapsize, "--watch-parent"],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout
    while not link.is_symlink():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise StreetError(f"the console of {flash} did not start")
        time.sleep(0.02)
    return proc, link
