"""The bus contract: what the poller and the command router ask of any Modbus transport.

Two backends implement it, bleak-style: :class:`gateway.transport.modbus_rtu.ModbusBus`
(an RS-485 line through pymodbus, one transaction at a time) and
:class:`gateway.transport.modbus_tcp.ModbusTcpBus` (a Modbus TCP server, requests
pipelined on one connection). :func:`open_bus` picks one from the ``type`` of a
``[[bus]]`` and imports it only then, so a gateway without serial buses never
loads pymodbus. Tests and benches may pass their own :class:`Bus`.

Both speak raw register words: what the words mean is the register map's
business (``protocols/regmap.py``, through :mod:`gateway.polling.read_plan`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from gateway.contracts import HOLDING, TABLE_NAMES, RegisterMap
from gateway.errors import GatewayError
from gateway.service.config import BusConfig
from gateway.service.stats import BusStats
from gateway.transport.priority_lock import ROUTINE, URGENT

Blocks = dict[int, tuple[int, Sequence[int]]]
"""Per table (HOLDING, INPUT, COIL, DISCRETE): ``(start address, words)`` read from a node (bits as 0/1)."""


class BusError(GatewayError):
    """A transaction on the bus did not succeed."""


class BusUnavailable(BusError):  # noqa: N818 - names the state, like NodeTimeout
    """The serial device cannot be opened, or the TCP server cannot be reached."""


class NodeTimeout(BusError):  # noqa: N818 - the name the API promises
    """The node did not answer within its timeout, retries included."""


class NodeError(BusError):
    """The node answered with a Modbus exception (``code``) or with a response that makes no sense.

    Attributes:
        code: the Modbus exception code (2 illegal address, 3 illegal value, 4
            device failure ...), or None when the response was not an exception.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Bus(ABC):
    """One Modbus master: reads, writes and broadcasts on one line or endpoint.

    Attributes:
        config: the ``[[bus]]`` it was made from.
        name: the bus name.
        stats: wire counters.
        concurrency: polls that may be in flight at once (1 on a serial line).
    """

    config: BusConfig
    name: str
    stats: BusStats
    concurrency: int = 1

    @abstractmethod
    async def read_node(
        self, unit: int, regmap: RegisterMap, *, priority: int = ROUTINE,
        response_timeout: float | None = None, retries: int | None = None,
    ) -> Blocks:
        """Read every register of a node, one request per table block; ``{table: (start, words)}``.

        ``response_timeout`` and ``retries`` override the bus's for this node. Raises
        NodeTimeout, NodeError or BusUnavailable.
        """

    @abstractmethod
    async def read_table(
        self, unit: int, regmap: RegisterMap, table: int, *, priority: int = URGENT
    ) -> tuple[int, Sequence[int]]:
        """Read one register table of a node (a command's read-back): ``(start, words)``."""

    async def read_requests(
        self, unit: int, requests: Sequence[tuple[int, int, int]], *, priority: int = ROUTINE,
        response_timeout: float | None = None, retries: int | None = None,
    ) -> list[Sequence[int]]:
        """Words of each ``(table, start, count)`` read request of a poll plan, in order.

        Backends override this to retry and to let urgent transactions in between
        two requests; this fallback reads them one by one through :meth:`read_table`.
        """
        out: list[Sequence[int]] = []
        for table, start, count in requests:
            _, words = await self.read_table(unit, _Span(table, start, count), table, priority=priority)
            out.append(words)
        return out

    @abstractmethod
    async def write(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Write holding registers of one node (function 16) and wait for its answer."""

    async def write_read(
        self, unit: int, address: int, values: Sequence[int], regmap: RegisterMap, *, priority: int = URGENT
    ) -> tuple[int, Sequence[int]]:
        """Write holding registers of one node, then read ``regmap``'s holding table back: ``(start, words)``.

        A command's write and its read-back. This fallback takes two transactions (function 16, then 03);
        a backend that can do both in one (function 23) overrides it.
        """
        await self.write(unit, address, values, priority=priority)
        return await self.read_table(unit, regmap, HOLDING, priority=priority)

    async def write_coils(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Set coils of one node (function 05, or 15 for several) and wait for its answer.

        Both backends override it; a bus made for a test that never meets a coil device need not.
        """
        raise NodeError(f"bus {self.name} cannot write coils")

    @abstractmethod
    async def broadcast(self, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Write holding registers of every node on the bus at once; nobody confirms it."""

    def commands_to(self, unit: int) -> int:
        """Urgent writes (commands) sent to ``unit`` through this bus, broadcasts included, since it was made.

        A poller that sees the count move reads every register of the node at
        its next poll: a command may have moved settings, the clock and counters.
        """
        counts: dict[int, int] = self.__dict__.get("_command_writes", {})
        return counts.get(unit, 0) + counts.get(0, 0)

    def request_full_poll(self, unit: int) -> None:
        """Have the poller read every register of ``unit`` at its next poll (as after a command)."""
        self._count_command(unit, URGENT)

    def _count_command(self, unit: int, priority: int) -> None:
        """Count an urgent write to ``unit`` (0: broadcast) for :meth:`commands_to`."""
        if priority <= URGENT:
            counts: dict[int, int] = self.__dict__.setdefault("_command_writes", {})
            counts[unit] = counts.get(unit, 0) + 1

    @abstractmethod
    def close(self) -> None:
        """Release the device or connection; the next transaction opens it again."""


class _Span:
    """One read request dressed as a register map, for backends that read tables by map."""

    def __init__(self, table: int, start: int, count: int) -> None:
        self.registers: list[Any] = []
        self.role = f"{TABLE_NAMES[table]} {start}+{count}"
        self.role_id = 0
        self.poll_classes: dict[str, int] | None = None
        self._blocks = {table: ((start, count),)}

    def blocks(self, table: int) -> tuple[tuple[int, int], ...]:
        return self._blocks.get(table, ())

    def __getitem__(self, name: str) -> Any:
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return False

    def decode(self, table: int, start: int, words: Sequence[int]) -> list[tuple[Any, Any]]:
        return []


def open_bus(config: BusConfig, stats: BusStats | None = None, *, units: Sequence[int] = ()) -> Bus:
    """The backend for ``config.type``, imported only when a bus of that type exists.

    ``units`` are the unit addresses configured on the bus: a TCP bus has no
    broadcast on the wire and writes each of them instead.
    """
    if config.type == "tcp":
        from gateway.transport.modbus_tcp import ModbusTcpBus

        return ModbusTcpBus(config, stats, units=units)
    from gateway.transport.modbus_rtu import ModbusBus

    return ModbusBus(config, stats)
