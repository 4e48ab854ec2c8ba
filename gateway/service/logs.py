"""The daemon's log: text for people, or one JSON object per line for machines.

JSON lines carry ``ts`` (ISO 8601, UTC), ``level``, ``logger`` and ``message``,
plus every structured field a call passes with ``extra=`` (for example
``{"node": "lamp-3", "bus": "bus0", "online": false}``) and ``exc_info`` for
tracebacks. The formatting is python-json-logger's; this module only picks the
field names and installs the handler on standard error (journald reads it there
under systemd).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_JSON_FIELDS = ["asctime", "levelname", "name", "message"]
_RENAME = {"asctime": "ts", "levelname": "level", "name": "logger"}
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
"""Configuration level names -> logging levels."""


class _UtcJsonFormatter(JsonFormatter):
    """ISO 8601 UTC time stamps with milliseconds."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802 - logging API
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def json_formatter() -> logging.Formatter:
    """The JSON line formatter (ts, level, logger, message, then the structured fields)."""
    return _UtcJsonFormatter(_JSON_FIELDS, rename_fields=_RENAME, json_ensure_ascii=False)


def setup_logging(fmt: str = "text", level: str | int = "info", *, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (standard error) in ``fmt`` ("text" or "json") at ``level``.

    Replaces the root logger's handlers, so calling it again (after a reload) switches format.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level] if isinstance(level, str) else level)
