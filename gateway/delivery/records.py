"""The outbox's vocabulary: what goes in (:class:`OutboxRecord`), what comes out (:class:`Entry`), its errors.

Plain types with no storage behind them, so that the delivery machine
(:mod:`gateway.delivery.machine`) can speak about records without SQLite.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import NamedTuple, Protocol

from gateway.errors import GatewayError

__all__ = ["Entry", "Kind", "OutboxError", "OutboxRecord", "Storable"]


class Kind(enum.IntEnum):
    """What a record is; retention sacrifices readings before events."""

    READING = 0
    EVENT = 1


class OutboxError(GatewayError):
    """The outbox file cannot be used: not an outbox, a newer schema, in use, corrupt or unreadable."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"outbox {path}: {problem}")
        self.path = path
        self.problem = problem


class OutboxRecord(NamedTuple):
    """One record to store; ``payload`` is already encoded and opaque to the outbox."""

    node: str
    seq: int
    kind: int
    created: float
    payload: bytes
    historical: bool = False


class Entry(NamedTuple):
    """A stored record as handed out by :meth:`Outbox.take`; ``id`` is what ack and nack take."""

    id: int
    node: str
    seq: int
    kind: int
    created: float
    payload: bytes
    attempts: int
    historical: bool


class Storable(Protocol):
    """What can be stored as an event record: a node's event, or an analytics flag about the node."""

    @property
    def seq(self) -> int:
        """The record's seq for its node."""

    @property
    def time(self) -> float:
        """When it happened (epoch seconds)."""

    def payload(self) -> bytes:
        """The bytes the outbox keeps."""
