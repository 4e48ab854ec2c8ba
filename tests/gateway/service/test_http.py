"""The local HTTP endpoint with a real HTTP client: health by status code, Prometheus metrics that parse."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from gateway.service.http import HttpEndpoint
from gateway.service.stats import BusStats, GatewayStats, NodeStats


def fetch(url: str, method: str = "GET") -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers["content-type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["content-type"], exc.read()


def stats() -> GatewayStats:
    s = GatewayStats()
    s.buses["bus0"] = BusStats("bus0", requests=10, timeouts=2, retries=1, connected=True)
    s.nodes["lamp-1"] = NodeStats("lamp-1", "bus0", 1, "lamp", online=True, polls=9, skipped=4)
    s.nodes["lamp-2"] = NodeStats("lamp-2", "bus0", 2, "lamp", online=False, failures=3)
    s.nodes["lamp-3"] = NodeStats("lamp-3", "bus0", 3, "lamp")
    s.readings_polled = 500
    s.readings_acked = 450
    s.polls_skipped["overrun"] = 4
    s.commands["done"] = 2
    return s


def serve_and(check) -> None:
    """Run ``check(base_url, endpoint)`` in a thread while the endpoint serves in the loop."""
    async def main() -> None:
        endpoint = HttpEndpoint(stats(), lambda: 17, port=0)
        await endpoint.start()
        try:
            assert endpoint.host == "127.0.0.1"
            await asyncio.to_thread(check, f"http://127.0.0.1:{endpoint.port}", endpoint)
        finally:
            await endpoint.stop()

    asyncio.run(main())


def test_health_is_503_until_the_broker_is_connected() -> None:
    """/health: degraded (503) while the broker is down, ok (200) once it is up; nodes counted."""
    def check(base: str, endpoint: HttpEndpoint) -> None:
        status, ctype, body = fetch(base + "/health")
        assert (status, ctype) == (503, "application/json")
        health = json.loads(body)
        assert health["status"] == "degraded"
        assert health["nodes"] == {"online": 1, "offline": 1, "unknown": 1}
        endpoint.stats.broker_connected = True
        status, _, body = fetch(base + "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"

    serve_and(check)


def test_metrics_parse_as_prometheus_text() -> None:
    """/metrics: readings in and out, queue depth, bus errors, per-node state, skipped polls, commands."""
    def check(base: str, _: HttpEndpoint) -> None:
        status, ctype, body = fetch(base + "/metrics")
        assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode())
            for s in fam.samples
        }
        assert samples[("streetedge_readings_polled_total", ())] == 500
        assert samples[("streetedge_readings_acked_total", ())] == 450
        assert samples[("streetedge_queue_depth", ())] == 17
        assert samples[("streetedge_bus_timeouts_total", (("bus", "bus0"),))] == 2
        assert samples[("streetedge_bus_retries_total", (("bus", "bus0"),))] == 1
        lamp1 = (("bus", "bus0"), ("node", "lamp-1"), ("role", "lamp"))
        lamp2 = (("bus", "bus0"), ("node", "lamp-2"), ("role", "lamp"))
        assert samples[("streetedge_node_online", lamp1)] == 1
        assert samples[("streetedge_node_online", lamp2)] == 0
        assert samples[("streetedge_node_skipped_total", lamp1)] == 4
        assert samples[("streetedge_polls_skipped_total", (("reason", "overrun"),))] == 4
        assert samples[("streetedge_commands_total", (("status", "done"),))] == 2

    serve_and(check)


def test_unknown_paths_and_methods() -> None:
    """404 for other paths, 405 for other methods, HEAD without a body."""
    def check(base: str, _: HttpEndpoint) -> None:
        assert fetch(base + "/nope")[0] == 404
        assert fetch(base + "/metrics", "POST")[0] == 405
        status, _, body = fetch(base + "/metrics", "HEAD")
        assert (status, body) == (200, b"")

    serve_and(check)
