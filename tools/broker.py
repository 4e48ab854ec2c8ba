"""A local MQTT broker for the demo, the tests and the benches.

Mosquitto (Debian) when it is installed; otherwise amqtt, a pure-Python broker
from PyPI, in its own process. amqtt speaks MQTT 3.1.1 only, so
:attr:`LocalBroker.protocol` tells clients which version to use.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Literal

Kind = Literal["auto", "mosquitto", "amqtt"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def mosquitto_path() -> str | None:
    """Path of the mosquitto executable (Debian installs it in /usr/sbin), or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin")


class LocalBroker:
    """Start a broker on a free loopback port; stop it (by PID) on exit.

    Args:
        kind: "mosquitto", "amqtt", or "auto" (Mosquitto if installed, else amqtt).
        port: a fixed port, or None for a free one.
        extra_config: lines appended to Mosquitto's configuration (ACLs, TLS...).
    """

    def __init__(self, kind: Kind = "auto", port: int | None = None, extra_config: str = "") -> None:
        if kind == "auto":
            kind = "mosquitto" if mosquitto_path() else "amqtt"
        self.kind: Literal["mosquitto", "amqtt"] = kind
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self._extra = extra_config
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def protocol(self) -> Literal["5", "3.1.1"]:
        """The newest MQTT version this broker speaks."""
        return "5" if self.kind == "mosquitto" else "3.1.1"

    @property
    def pid(self) -> int | None:
        """The broker process's id while it runs (a test may pause it to play a stalled broker)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT``."""
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalBroker:
        """Start the broker and wait until it accepts connections."""
        self._dir = tempfile.TemporaryDirectory(prefix="streetedge-broker-")
        log = Path(self._dir.name) / "broker.log"
        if self.kind == "mosquitto":
            exe = mosquitto_path()
            if exe is None:
                raise RuntimeError("mosquitto is not installed (Debian package 'mosquitto')")
            conf = Path(self._dir.name) / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {self.host}\nallow_anonymous true\npersistence false\n"
                f"max_queued_messages 100000\n{self._extra}\n"
            )
            cmd = [exe, "-c", str(conf)]
        else:
            cmd = [sys.executable, "-m", "tools.broker", "--port", str(self.port)]
        with log.open("wb") as out:
            self._proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited at start: {log.read_text()[-2000:]}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {timeout} s")

    def stop(self) -> None:
        """Stop the broker process we started."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


async def _serve_amqtt(port: int) -> None:
    from amqtt.broker import Broker  # imported here: only this fallback needs it

    broker = Broker(
        {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
    )
    await broker.start()
    try:
        await asyncio.Event().wait()
    finally:
        await broker.shutdown()


def main() -> None:
    """Run the embedded amqtt broker until interrupted (``python -m tools.broker``)."""
    parser = argparse.ArgumentParser(description="embedded MQTT 3.1.1 broker (amqtt)")
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_amqtt(args.port))


if __name__ == "__main__":
    main()
