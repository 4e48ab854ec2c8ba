"""What the gateway knows about itself right now: the state a dashboard or a test reads.

The poller, the bus adapters, the uplink and the command router each update
their part in place; readers take :meth:`GatewayStats.snapshot` for a plain,
JSON-friendly copy. Nothing here does I/O.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from gateway.contracts import Number

OFFLINE_AFTER = 3
"""Consecutive failed polls after which a node counts as offline."""


@dataclass
class NodeStats:
    """Live state of one polled node."""

    id: str
    bus: str
    unit: int
    role: str
    online: bool | None = None
    """None until the first poll settles it; False after OFFLINE_AFTER failures in a row."""
    values: dict[str, Number] = field(default_factory=dict)
    """Last engineering value of every register, by register name."""
    last_poll: float | None = None
    """Epoch time of the last successful poll."""
    last_error: str | None = None
    """Why the last failed poll failed."""
    polls: int = 0
    """Successful polls."""
    failures: int = 0
    """Failed polls."""
    consecutive_failures: int = 0
    skipped: int = 0
    """Poll slots skipped: the node's bus fell behind, or the uplink asked the pollers to hold back."""
    readings: int = 0
    """Readings (register values) taken from the node."""
    rssi: int | None = None
    """BLE nodes: signal strength (dBm) of the last good advert, when the scanner reports it."""


@dataclass
class BusStats:
    """Wire counters of one bus."""

    name: str
    requests: int = 0
    """Requests answered (reads and writes), broadcasts included."""
    timeouts: int = 0
    """Requests (each attempt, retries included) that no node answered in time."""
    errors: int = 0
    """Modbus exception responses and other failed requests."""
    broadcasts: int = 0
    connected: bool = False
    retries: int = 0
    """Requests repeated after a timeout."""


@dataclass
class GatewayStats:
    """Everything the demo UI shows; updated in place while the gateway runs."""

    nodes: dict[str, NodeStats] = field(default_factory=dict)
    buses: dict[str, BusStats] = field(default_factory=dict)
    broker_connected: bool = False
    broker_connects: int = 0
    packs_queued: int = 0
    """SenML packs handed to the uplink."""
    packs_acked: int = 0
    """SenML packs the broker acknowledged (QoS 1 PUBACK)."""
    readings_acked: int = 0
    """SenML records inside acknowledged packs."""
    messages_acked: int = 0
    """All acknowledged publishes: data, results and state."""
    queue_drops: int = 0
    """Messages dropped because the publish queue was full (oldest first)."""
    outbox_stored: int = 0
    """Records (polls) stored in the durable outbox since its file was created."""
    outbox_dropped: int = 0
    """Records the outbox's disk budget (or a full disk) pushed out, since its file was created."""
    outbox_depth: int = 0
    """Records in the outbox now: not yet acknowledged by the broker."""
    readings_polled: int = 0
    """Readings (register values) taken from nodes by good polls."""
    polls_skipped: Counter[str] = field(default_factory=Counter)
    """Poll slots skipped, by reason: ``overrun`` (the bus or CPU fell behind), ``backpressure``."""
    commands: Counter[str] = field(default_factory=Counter)
    """Command results by status: done, rejected, failed."""
    recent_results: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=20))
    """The last command results, newest last."""
    started: float = field(default_factory=time.time)

    def snapshot(self) -> dict[str, Any]:
        """A plain copy (dicts, lists, numbers) safe to serialise or keep."""
        return {
            "nodes": {
                k: {**vars(n), "values": dict(n.values)} for k, n in self.nodes.items()
            },
            "buses": {k: dict(vars(b)) for k, b in self.buses.items()},
            "broker_connected": self.broker_connected,
            "broker_connects": self.broker_connects,
            "packs_queued": self.packs_queued,
            "packs_acked": self.packs_acked,
            "readings_acked": self.readings_acked,
            "messages_acked": self.messages_acked,
            "queue_drops": self.queue_drops,
            "outbox_stored": self.outbox_stored,
            "outbox_dropped": self.outbox_dropped,
            "outbox_depth": self.outbox_depth,
            "readings_polled": self.readings_polled,
            "polls_skipped": dict(self.polls_skipped),
            "commands": dict(self.commands),
            "recent_results": list(self.recent_results),
            "started": self.started,
        }
