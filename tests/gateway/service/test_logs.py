"""Log lines: JSON objects with ts, level, logger, message and the structured fields."""

from __future__ import annotations

import io
import json
import logging

from gateway.service.logs import setup_logging


def test_json_lines_carry_structured_fields() -> None:
    """One JSON object per line; extra= fields appear as keys; exceptions as exc_info."""
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("json", "debug", stream=out)
        log = logging.getLogger("gateway.polling.poller")
        log.warning("node %s offline", "lamp-3", extra={"node": "lamp-3", "online": False})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
        log.debug("details")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) == 3
    first = lines[0]
    assert {k: first[k] for k in ("level", "logger", "message", "node", "online")} == {
        "level": "WARNING", "logger": "gateway.polling.poller", "message": "node lamp-3 offline",
        "node": "lamp-3", "online": False,
    }
    assert first["ts"].endswith("Z") and first["ts"][10] == "T"
    assert "ValueError: boom" in lines[1]["exc_info"]
    assert lines[2]["level"] == "DEBUG"


def test_text_format_and_level() -> None:
    """Text lines for people; records below the level are left out."""
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("text", "warning", stream=out)
        logging.getLogger("x").info("hidden")
        logging.getLogger("x").error("shown")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    assert out.getvalue().strip().endswith("ERROR x: shown")
    assert "hidden" not in out.getvalue()
