"""Prometheus metrics of a running gateway, read from its live state at scrape time.

Nothing is counted twice: the pollers, buses and uplink already keep their
counters in :class:`~gateway.service.stats.GatewayStats`; :class:`StatsCollector`
turns them into metric families when ``/metrics`` is scraped (so the hot path
pays nothing for metrics). prometheus_client does the exposition format.

=========================================  =======  ==========================================
metric                                     type     meaning
=========================================  =======  ==========================================
``streetedge_readings_polled_total``       counter  readings (register values) read from nodes
``streetedge_readings_acked_total``        counter  readings in packs the broker acknowledged
``streetedge_packs_queued_total``          counter  SenML packs handed to the uplink
``streetedge_packs_acked_total``           counter  SenML packs acknowledged
``streetedge_queue_depth``                 gauge    messages waiting in the uplink's publish queue
``streetedge_queue_drops_total``           counter  messages dropped from a full queue
``streetedge_outbox_depth``                gauge    polls in the durable outbox, not yet acknowledged
``streetedge_outbox_stored_total``         counter  polls stored in the outbox
``streetedge_outbox_dropped_total``        counter  polls the outbox's disk budget pushed out
``streetedge_polls_skipped_total``         counter  poll slots skipped, by ``reason``
``streetedge_bus_requests_total``          counter  answered requests, by ``bus``
``streetedge_bus_timeouts_total``          counter  unanswered requests, by ``bus``
``streetedge_bus_errors_total``            counter  exception answers and failures, by ``bus``
``streetedge_bus_retries_total``           counter  repeated requests, by ``bus``
``streetedge_bus_connected``               gauge    1 when the bus's device or connection is open
``streetedge_node_online``                 gauge    1 online, 0 offline or not polled yet, by ``node``
``streetedge_node_polls_total``            counter  good polls, by ``node``
``streetedge_node_failures_total``         counter  failed polls, by ``node``
``streetedge_node_skipped_total``          counter  skipped poll slots, by ``node``
``streetedge_commands_total``              counter  command results, by ``status``
``streetedge_broker_connected``            gauge    1 while the broker connection is up
``streetedge_broker_connects_total``       counter  successful broker connections
``streetedge_start_time_seconds``          gauge    start time, seconds since the epoch
=========================================  =======  ==========================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.service.stats import GatewayStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Content type of the Prometheus text exposition format."""


class StatsCollector(Collector):
    """Metric families from a :class:`GatewayStats` (and the queue depth) at collection time.

    Args:
        stats: the gateway's live state.
        queue_depth: messages waiting for the broker right now.
    """

    def __init__(self, stats: GatewayStats, queue_depth: Callable[[], int] = lambda: 0) -> None:
        self.stats = stats
        self.queue_depth = queue_depth

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family (see the module's table)."""
        s = self.stats
        for name, doc, value in (
            ("readings_polled", "Readings (register values) read from nodes.", s.readings_polled),
            ("readings_acked", "Readings in packs the broker acknowledged.", s.readings_acked),
            ("packs_queued", "SenML packs handed to the uplink.", s.packs_queued),
            ("packs_acked", "SenML packs the broker acknowledged.", s.packs_acked),
            ("queue_drops", "Messages dropped from a full publish queue.", s.queue_drops),
            ("broker_connects", "Successful broker connections.", s.broker_connects),
            ("outbox_stored", "Polls stored in the durable outbox.", s.outbox_stored),
            ("outbox_dropped", "Polls the outbox's disk budget pushed out.", s.outbox_dropped),
        ):
            yield CounterMetricFamily(f"streetedge_{name}", doc, value=value)
        yield GaugeMetricFamily(
            "streetedge_queue_depth", "Messages waiting in the publish queue.", value=self.queue_depth()
        )
        yield GaugeMetricFamily(
            "streetedge_outbox_depth", "Polls in the outbox, not yet acknowledged.", value=s.outbox_depth
        )
        yield GaugeMetricFamily(
            "streetedge_broker_connected", "1 while the broker connection is up.", value=int(s.broker_connected)
        )
        yield GaugeMetricFamily("streetedge_start_time_seconds", "Start time (epoch seconds).", value=s.started)
        skipped = CounterMetricFamily(
            "streetedge_polls_skipped", "Poll slots skipped, by reason.", labels=["reason"]
        )
        for reason in ("overrun", "backpressure"):
            skipped.add_metric([reason], s.polls_skipped.get(reason, 0))
        yield skipped
        commands = CounterMetricFamily("streetedge_commands", "Command results, by status.", labels=["status"])
        for status, count in sorted(s.commands.items()):
            commands.add_metric([status], count)
        yield commands
        yield from self._buses()
        yield from self._nodes()

    def _buses(self) -> Iterator[Metric]:
        fams = {
            key: CounterMetricFamily(f"streetedge_bus_{key}", doc, labels=["bus"])
            for key, doc in (
                ("requests", "Answered requests."),
                ("timeouts", "Requests nobody answered in time (every attempt)."),
                ("errors", "Exception answers and failed requests."),
                ("retries", "Requests repeated after a timeout."),
            )
        }
        connected = GaugeMetricFamily("streetedge_bus_connected", "1 when the bus is open.", labels=["bus"])
        for name, bus in sorted(self.stats.buses.items()):
            for key, fam in fams.items():
                fam.add_metric([name], getattr(bus, key))
            connected.add_metric([name], int(bus.connected))
        yield from fams.values()
        yield connected

    def _nodes(self) -> Iterator[Metric]:
        labels = ["node", "bus", "role"]
        online = GaugeMetricFamily("streetedge_node_online", "1 online, 0 offline or not polled yet.", labels=labels)
        polls = CounterMetricFamily("streetedge_node_polls", "Good polls.", labels=labels)
        failures = CounterMetricFamily("streetedge_node_failures", "Failed polls.", labels=labels)
        skipped = CounterMetricFamily("streetedge_node_skipped", "Skipped poll slots.", labels=labels)
        for node_id, node in sorted(self.stats.nodes.items()):
            values = [node_id, node.bus, node.role]
            online.add_metric(values, int(node.online is True))
            polls.add_metric(values, node.polls)
            failures.add_metric(values, node.failures)
            skipped.add_metric(values, node.skipped)
        yield from (online, polls, failures, skipped)


def registry_for(stats: GatewayStats, queue_depth: Callable[[], int] = lambda: 0) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one) holding the gateway's collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, queue_depth))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(registry)
