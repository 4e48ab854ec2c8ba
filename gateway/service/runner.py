"""The gateway as a service: what ``streetedge run`` does around :class:`~gateway.service.daemon.Gateway`.

- logging set up from ``[logging]`` (or ``--log-format``);
- the local HTTP endpoint (``[http]``); if its port is taken the gateway runs
  on without it and says so;
- systemd: ``READY=1`` once running, watchdog pings from the event loop,
  ``RELOADING=1``/``READY=1`` around a reload, ``STOPPING=1`` on the way out;
- SIGTERM/SIGINT: stop cleanly (polling stops, queued messages drain, the
  offline state is published, the process exits 0);
- SIGHUP: read the configuration file again; a file that does not check is
  rejected whole (logged, the running configuration stays), a good one is
  applied in place (:meth:`Gateway.reload`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from pathlib import Path

from gateway.errors import GatewayError
from gateway.service.config import Config, ConfigError, load_config
from gateway.service.daemon import Gateway
from gateway.service.http import HttpEndpoint
from gateway.service.logs import setup_logging
from gateway.service.systemd import Notifier, keep_alive, watchdog_interval
from gateway.transport.serial_device import current_user

log = logging.getLogger(__name__)


class Service:
    """One gateway process bound to its configuration file.

    Args:
        path: the configuration file (read again on SIGHUP).
        config: its checked content.
        log_format: overrides ``[logging] format`` when given.
        notifier: the systemd notifier (from ``$NOTIFY_SOCKET`` when omitted).
    """

    def __init__(
        self, path: Path, config: Config, *, log_format: str | None = None, notifier: Notifier | None = None
    ) -> None:
        self.path = path
        self.config = config
        self.log_format = log_format
        self.notifier = notifier or Notifier()
        self.gateway = Gateway(config)
        self.http: HttpEndpoint | None = None
        self._stop = asyncio.Event()
        self._reloads: asyncio.Queue[None] = asyncio.Queue(1)

    def setup_logging(self) -> None:
        """Install the configured log format and level."""
        cfg = self.config.logging
        setup_logging(self.log_format or cfg.format, cfg.level)
        if not logging.getLogger().isEnabledFor(logging.DEBUG):
            # pymodbus logs every unanswered request at ERROR; the poller reports the
            # same failures per node, with context, so keep it quiet.
            logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

    def stop(self) -> None:
        """Ask the service to stop (what SIGTERM does)."""
        self._stop.set()

    def request_reload(self) -> None:
        """Ask for the configuration file to be read again (what SIGHUP does); repeats coalesce."""
        with contextlib.suppress(asyncio.QueueFull):
            self._reloads.put_nowait(None)

    async def reload(self) -> bool:
        """Read the file again and apply it; False (logged, nothing changed) if it does not check."""
        self.notifier.reloading()
        try:
            try:
                new = load_config(self.path)
            except ConfigError as exc:
                log.error("reload rejected, keeping the running configuration: %s", exc,
                          extra={"event": "reload", "accepted": False})
                self.notifier.status(f"reload rejected: {exc}")
                return False
            logging_before = self.config.logging
            changes = await self.gateway.reload(new)
            self.config = self.gateway.config
            if self.config.logging != logging_before:
                self.setup_logging()
                changes.append("logging changed")
            log.info("configuration reloaded: %s", "; ".join(changes) or "no change",
                     extra={"event": "reload", "accepted": True, "changes": changes})
            self.notifier.status(_status(self.config))
            return True
        finally:
            self.notifier.ready()

    async def run(self) -> None:
        """Run until stopped; returns after a clean shutdown."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig, handler in ((signal.SIGTERM, self.stop), (signal.SIGINT, self.stop),
                             (signal.SIGHUP, self.request_reload)):
            try:
                loop.add_signal_handler(sig, handler)
                installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                log.debug("cannot handle %s here", sig.name)
        cfg = self.config
        if cfg.http.enabled:
            uplink_depth = self._queue_depth
            self.http = HttpEndpoint(self.gateway.stats, uplink_depth, host=cfg.http.listen, port=cfg.http.port)
            try:
                await self.http.start()
            except OSError as exc:
                log.error("http endpoint not started (%s:%d): %s; running without it",
                          cfg.http.listen, cfg.http.port, exc)
                self.http = None
        runner = asyncio.create_task(self.gateway.run(), name="gateway")
        helpers = [asyncio.create_task(self._reload_loop(), name="reload")]
        interval = watchdog_interval()
        if interval is not None and self.notifier.enabled:
            helpers.append(asyncio.create_task(
                keep_alive(self.notifier, interval, lambda: not runner.done()), name="watchdog"))
        self.notifier.ready(_status(cfg))
        try:
            stop = asyncio.create_task(self._stop.wait())
            await asyncio.wait({runner, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            if not runner.done():
                self.notifier.stopping()
                self.gateway.stop()
            await runner  # re-raises a crash of the gateway
        finally:
            self.notifier.stopping()
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            if self.http is not None:
                await self.http.stop()
            for sig in installed:
                loop.remove_signal_handler(sig)
            self.notifier.close()

    async def _reload_loop(self) -> None:
        while True:
            await self._reloads.get()
            try:
                await self.reload()
            except Exception:  # a failed reload must not end the service
                log.exception("reload failed; the running configuration stays")

    def _queue_depth(self) -> int:
        uplink = self.gateway.uplink
        return len(uplink.queue) if uplink is not None else 0


def _status(config: Config) -> str:
    return f"{config.site}/{config.gateway}: {len(config.bus)} bus(es), {len(config.node)} node(s)"


class StartError(GatewayError, RuntimeError):
    """This machine is not ready for the configuration: a state file's directory is missing or not writable.

    Raised before anything starts or is created; the message names the key, the path and the remedy.
    """


STATE_FILES = (("delivery.outbox", "delivery", "outbox"), ("commands.replay_db", "commands", "replay_db"),
               ("commands.audit_log", "commands", "audit_log"))
"""The files the gateway writes: (key path, table, key)."""


def state_file_findings(config: Config) -> list[tuple[str, str, str | None]]:
    """``(key path, file, problem or None)`` for each state file configured (outbox, replay database, audit log).

    Checked before the service starts, so that a missing directory is reported, not created (as root) or
    turned into a traceback deep inside SQLite.
    """
    findings = []
    for key, table, name in STATE_FILES:
        value = getattr(getattr(config, table), name)
        if value:
            findings.append((key, value, _state_file_problem(Path(value))))
    return findings


def state_file_problems(config: Config) -> list[str]:
    """One line per state file the gateway could not create or write: ``key: problem``."""
    return [f"{key}: {problem}" for key, _, problem in state_file_findings(config) if problem]


def _state_file_problem(path: Path) -> str | None:
    try:
        return _state_file_problem_of(path, current_user())
    except OSError as exc:  # a directory on the way that this user may not enter
        return f"cannot reach {path}: {exc.strerror} (user {current_user()}); fix the owner or mode on its path"


def _state_file_problem_of(path: Path, user: str) -> str | None:
    folder = path.parent
    if not folder.exists():
        return (f"directory {folder} does not exist; create it, writable by the gateway's user "
                f"(the packaged unit does: StateDirectory=streetedge), or change the path")
    if not folder.is_dir():
        return f"{folder} is not a directory; change the path"
    if path.is_dir():
        return f"{path} is a directory; give a file name in it"
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK):
            return f"{path} is not readable and writable by user {user}; fix its owner or mode"
    elif not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create {path}: directory {folder} is not writable by user {user}; fix its owner or mode"
    return None


def run_service(path: Path, *, log_format: str | None = None) -> None:
    """``streetedge run``: check the file (ConfigError) and its state files (StartError), then serve until SIGTERM."""
    config = load_config(path)
    problems = state_file_problems(config)
    if problems:
        raise StartError(problems[0])

    async def main() -> None:
        service = Service(path, config, log_format=log_format)
        service.setup_logging()
        await service.run()

    asyncio.run(main())
