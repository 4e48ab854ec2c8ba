"""The local HTTP endpoint: ``/health`` (JSON) and ``/metrics`` (Prometheus), loopback by default.

h11 parses and writes HTTP/1.1; asyncio owns the sockets (the sans-IO shape of
the rest of the gateway). One request per connection, then the server closes
it: scrapers and health checks open a connection per request anyway.

``GET /health`` answers 200 with ``{"status": "ok", ...}`` while the broker
connection is up, and 503 with ``"status": "degraded"`` while it is not, so a
monitor can alarm on the status code alone; the body counts nodes online,
offline and not polled yet. ``GET /metrics`` answers the text exposition format
(:mod:`gateway.service.metrics`). Anything else: 404, or 405 for another method.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable

import h11

from gateway.service.metrics import CONTENT_TYPE, exposition, registry_for
from gateway.service.stats import GatewayStats

log = logging.getLogger(__name__)

READ_TIMEOUT = 10.0
"""Seconds a client gets to send its request."""
MAX_REQUEST = 16 * 1024
"""Bytes of request head accepted (h11 refuses more)."""


class HttpEndpoint:
    """Serves ``/health`` and ``/metrics`` of one gateway.

    Args:
        stats: the gateway's live state.
        queue_depth: messages waiting for the broker now.
        host: address to bind (loopback by default).
        port: TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
    """

    def __init__(
        self, stats: GatewayStats, queue_depth: Callable[[], int] = lambda: 0, *,
        host: str = "127.0.0.1", port: int = 9480,
    ) -> None:
        self.stats = stats
        self.host = host
        self.port = port
        self.registry = registry_for(stats, queue_depth)
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Bind and serve in the background (OSError if the address is taken)."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("http endpoint on http://%s:%d (/health, /metrics)", self.host, self.port)

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def health(self) -> tuple[int, dict[str, object]]:
        """Status code and body of ``/health``."""
        s = self.stats
        nodes = {"online": 0, "offline": 0, "unknown": 0}
        for node in s.nodes.values():
            nodes["online" if node.online else "unknown" if node.online is None else "offline"] += 1
        ok = s.broker_connected
        body: dict[str, object] = {
            "status": "ok" if ok else "degraded",
            "broker_connected": ok,
            "nodes": nodes,
            "uptime": round(time.time() - s.started, 1),
            "readings_acked": s.readings_acked,
        }
        return (200 if ok else 503), body

    def route(self, method: bytes, target: bytes) -> tuple[int, str, bytes]:
        """Status, content type and body for one request."""
        path = target.split(b"?", 1)[0]
        if path not in (b"/health", b"/metrics"):
            return 404, "text/plain; charset=utf-8", b"not found: try /health or /metrics\n"
        if method not in (b"GET", b"HEAD"):
            return 405, "text/plain; charset=utf-8", b"method not allowed\n"
        if path == b"/health":
            status, body = self.health()
            return status, "application/json", json.dumps(body).encode() + b"\n"
        return 200, CONTENT_TYPE, exposition(self.registry)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        try:
            request = await asyncio.wait_for(_next_request(conn, reader), READ_TIMEOUT)
            if request is None:
                return
            status, ctype, body = self.route(request.method, request.target)
            payload = b"" if request.method == b"HEAD" else body
            headers = [("content-type", ctype), ("content-length", str(len(body))), ("connection", "close")]
            writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
            if payload:
                writer.write(conn.send(h11.Data(data=payload)))
            writer.write(conn.send(h11.EndOfMessage()))
            await writer.drain()
        except (TimeoutError, h11.RemoteProtocolError, ConnectionError) as exc:
            log.debug("http: dropped a client: %s", exc)
        except Exception:  # a bug in a handler must not take the gateway down
            log.exception("http: request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _next_request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
    """The request head, or None if the client left without sending one."""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(4096)
            conn.receive_data(data)  # b"" is the end of the stream
            continue
        if isinstance(event, h11.Request):
            return event
        return None
