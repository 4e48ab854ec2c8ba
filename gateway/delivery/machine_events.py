"""The vocabulary of the delivery machine (:mod:`gateway.delivery.machine`): its events and its actions.

Small immutable values, as h11's events are: an *event* tells the machine what
happened (the driver observed it), an *action* tells the driver what to do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.delivery.records import Entry, OutboxRecord

GATEWAY = ""
"""In a rebirth request: the gateway birth (and with it every node birth)."""


class Lane(enum.Enum):
    """Which way a :class:`Publish` goes: events (one message per node), live or backlog polls."""

    EVENTS = "events"
    LIVE = "live"
    BACKLOG = "backlog"


# -- events ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorded:
    """A good poll, encoded; ``firmware`` is the node's firmware register in it (None: the role has none)."""

    record: OutboxRecord
    firmware: int | None = None


@dataclass(frozen=True, slots=True)
class WriteDue:
    """The writer is free: hand over what waits for the disk."""


@dataclass(frozen=True, slots=True)
class Stored:
    """A held :class:`Store` (or held events) came back from the disk with these entries."""

    entries: tuple[Entry, ...]
    session: int
    now: float


@dataclass(frozen=True, slots=True)
class SessionOpening:
    """A broker connection is up: session ``session``; ``boundary`` is the outbox's last id now."""

    session: int
    boundary: int


@dataclass(frozen=True, slots=True)
class SessionOpened:
    """The births are out: data may flow."""

    now: float


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """The connection is gone."""


@dataclass(frozen=True, slots=True)
class Sent:
    """A data message carrying these outbox ids went to the uplink."""

    ids: tuple[int, ...]
    historical: bool


@dataclass(frozen=True, slots=True)
class Acked:
    """The broker acknowledged the data message carrying these ids."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Returned:
    """The data message carrying these ids will not be acknowledged (session ended, refused, pushed out)."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unreadable:
    """No schema here can read these entries: they leave the outbox unsent (never expected)."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Taken:
    """A :class:`Take` came back with these backlog entries (handed out, in flight).

    Empty, it ends the session's backlog: the take must not have run before a :class:`Release` handed out earlier
    (the driver takes only while no write is under way)."""

    entries: tuple[Entry, ...]
    session: int


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (monotonic seconds): compose what is due."""

    now: float


@dataclass(frozen=True, slots=True)
class Flush:
    """The gateway stops: compose every live poll now and report the counters once more."""

    now: float


@dataclass(frozen=True, slots=True)
class Rebirth:
    """Births of these nodes again (:data:`GATEWAY` for the gateway birth and every node)."""

    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class NodesChanged:
    """The node table changed (a reload): these node ids, in table order."""

    nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Counted:
    """The outbox's count of dropped records, as just read."""

    dropped: int


@dataclass(frozen=True, slots=True)
class StatusSent:
    """The delivery counters went out at ``now`` (after a :class:`ReportStatus` or with the births)."""

    now: float


Event = (Recorded | WriteDue | Stored | SessionOpening | SessionOpened | SessionClosed | Sent | Acked | Returned
         | Unreadable | Taken | Tick | Flush | Rebirth | NodesChanged | Counted | StatusSent)

# -- actions -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Store:
    """Store these records; ``held``: hand them out at once and answer with :class:`Stored` for ``session``."""

    records: tuple[OutboxRecord, ...]
    held: bool
    session: int


@dataclass(frozen=True, slots=True)
class Ack:
    """Delete these entries from the outbox: the broker has them."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Release:
    """Give these in-flight entries back to the outbox's line: they go out again."""

    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Take:
    """Take up to ``limit`` backlog entries (ids up to ``max_id``); answer with :class:`Taken` for ``session``."""

    limit: int
    max_id: int
    session: int


@dataclass(frozen=True, slots=True)
class Publish:
    """Compose these entries into data messages and send them (answer each with :class:`Sent`)."""

    entries: tuple[Entry, ...]
    historical: bool
    lane: Lane


@dataclass(frozen=True, slots=True)
class SendBirths:
    """Send the gateway birth (if ``gateway``, first) and these node births with their firmware."""

    gateway: bool
    nodes: tuple[tuple[str, int | None], ...]


@dataclass(frozen=True, slots=True)
class ReportStatus:
    """Send the delivery counters (then :class:`StatusSent`)."""


@dataclass(frozen=True, slots=True)
class CountDrops:
    """Polls dropped before they reached the disk (memory bound): count them."""

    count: int


Action = Store | Ack | Release | Take | Publish | SendBirths | ReportStatus | CountDrops
