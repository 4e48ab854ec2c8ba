"""Modbus TCP: one connection to a server, requests pipelined and matched by transaction id.

A Modbus TCP frame is the RTU frame without its CRC behind a 7-byte MBAP header
(transaction id, protocol 0, length, unit). Unlike a serial line, a TCP server
(a meter, or a TCP-to-RTU gateway in front of many units) may have several
requests outstanding; this bus writes them back to back and matches answers by
transaction id, so ``concurrency`` polls share one connection without waiting
for each other. The request PDUs come from ``protocols.modbus`` (the same
builders that frame them for RTU), so the wire format is stated once.

Why not pymodbus here: its client serialises requests behind one lock and
costs about 50 µs of CPU per transaction on these machines (docs/FACTS); the
gateway's throughput target needs a fraction of that. pymodbus still drives the
serial lines (:mod:`gateway.transport.modbus_rtu`) and serves the simulated meter in the
tests.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Sequence

from gateway.contracts import BIT_TABLES, HOLDING, TABLE_NAMES, TABLES, RegisterMap, bits, modbus
from gateway.service.config import BusConfig
from gateway.service.stats import BusStats
from gateway.transport.bus import Blocks, Bus, BusUnavailable, NodeError, NodeTimeout
from gateway.transport.priority_lock import ROUTINE, URGENT

log = logging.getLogger(__name__)

RECONNECT_FIRST = 0.5
"""Seconds before the first reconnection attempt after a failure; doubled up to RECONNECT_CAP."""
RECONNECT_CAP = 30.0
"""Longest wait between connection attempts, in seconds."""
CONNECT_TIMEOUT = 5.0
"""Seconds allowed for the TCP handshake."""

_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length (unit + PDU), unit
_HEAD = struct.Struct(">HHH")
_FC_READ_HOLDING = 3
_FC_READ_INPUT = 4
_FC_WRITE_MULTIPLE = 16
_words: dict[int, struct.Struct] = {}


def _words_of(count: int) -> struct.Struct:
    st = _words.get(count)
    if st is None:
        st = _words[count] = struct.Struct(f">{count}H")
    return st


class _Expired(Exception):  # noqa: N818 - private marker, never leaves this module
    """A request's answer did not come in time."""


def _expire(link: _Link, sent: list[tuple[int, asyncio.Future[bytes]]]) -> None:
    for tid, fut in sent:
        link.forget(tid)
        if not fut.done():
            fut.set_exception(_Expired())
            fut.exception()  # marked retrieved: only the first of an exchange is awaited


class _Link(asyncio.Protocol):
    """The open connection: writes frames, splits the byte stream into answers by transaction id."""

    def __init__(self, bus_name: str) -> None:
        self.bus_name = bus_name
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.closed = False
        self._rest = b""
        self._tid = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
            self._rest = b""
        n = len(data)
        i = 0
        pending = self.pending
        while n - i >= 7:
            tid, proto, length = _HEAD.unpack_from(data, i)
            if proto != 0 or not 2 <= length <= 254:
                log.warning("bus %s: garbled Modbus TCP stream (protocol %d, length %d); reconnecting",
                            self.bus_name, proto, length)
                self.abort()
                return
            end = i + 6 + length
            if end > n:
                break
            fut = pending.pop(tid, None)
            if fut is not None and not fut.done():
                fut.set_result(data[i + 6 : end])  # unit + PDU
            i = end
        if i < n:
            self._rest = data[i:]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        failure = ConnectionError(f"connection closed{f': {exc}' if exc else ''}")
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(failure)
                fut.exception()  # marked retrieved: a cancelled poll no longer awaits it
        self.pending.clear()

    def send(self, unit: int, pdu: bytes) -> tuple[int, asyncio.Future[bytes]]:
        """Write one request; the future gets the answer's unit + PDU."""
        tid = self._tid = (self._tid + 1) & 0xFFFF
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[tid] = fut
        assert self.transport is not None
        self.transport.write(_MBAP.pack(tid, 0, len(pdu) + 1, unit) + pdu)
        return tid, fut

    def forget(self, tid: int) -> None:
        """Stop waiting for ``tid`` (timed out): a late answer is dropped."""
        self.pending.pop(tid, None)

    def abort(self) -> None:
        """Close at once; waiting requests fail."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class ModbusTcpBus(Bus):
    """The Modbus TCP master of one ``[[bus]]`` with ``type = "tcp"``.

    Args:
        config: host, port, timeout, retries, backoff and concurrency.
        stats: counters to update; a fresh :class:`BusStats` when omitted.
        units: the units configured on this bus (what a broadcast reaches).
    """

    def __init__(self, config: BusConfig, stats: BusStats | None = None, *, units: Sequence[int] = ()) -> None:
        self.config = config
        self.name = config.name
        self.stats = stats or BusStats(config.name)
        self.concurrency = config.concurrency
        self.units = list(units)
        self._link: _Link | None = None
        self._connecting: asyncio.Future[_Link] | None = None
        self._next_attempt = 0.0
        self._failures = 0
        self._reads: dict[tuple[int, int, int, int], bytes] = {}

    def __repr__(self) -> str:
        return f"<ModbusTcpBus {self.name} {self.config.host}:{self.config.port}>"

    async def read_node(
        self, unit: int, regmap: RegisterMap, *, priority: int = ROUTINE,
        response_timeout: float | None = None, retries: int | None = None,
    ) -> Blocks:
        """Read every register table of a node; all requests go out at once (pipelined)."""
        tables: list[tuple[int, int, int]] = [
            (table, start, count) for table in TABLES for start, count in regmap.blocks(table)
        ]
        if not tables:
            return {}
        wait = self.config.timeout if response_timeout is None else response_timeout
        tries = self.config.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                answers = await self._exchange(unit, [self._read_pdu(unit, t, s, c) for t, s, c in tables], wait)
                break
            except NodeTimeout:
                if attempt >= tries:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(self.config.backoff * 2**attempt)
                attempt += 1
        blocks: Blocks = {}
        for (table, start, count), answer in zip(tables, answers, strict=True):
            words = self._check_read(unit, table, start, count, answer)
            if table in blocks:  # a table longer than one request: blocks are contiguous
                first, earlier = blocks[table]
                blocks[table] = (first, tuple(earlier) + tuple(words))
            else:
                blocks[table] = (start, words)
        return blocks

    async def read_requests(
        self, unit: int, requests: Sequence[tuple[int, int, int]], *, priority: int = ROUTINE,
        response_timeout: float | None = None, retries: int | None = None,
    ) -> list[Sequence[int]]:
        """Words of each ``(table, start, count)`` read of a poll plan; all requests go out at once (pipelined)."""
        if not requests:
            return []
        wait = self.config.timeout if response_timeout is None else response_timeout
        tries = self.config.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                answers = await self._exchange(unit, [self._read_pdu(unit, t, s, c) for t, s, c in requests], wait)
                break
            except NodeTimeout:
                if attempt >= tries:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(self.config.backoff * 2**attempt)
                attempt += 1
        return [
            self._check_read(unit, table, start, count, answer)
            for (table, start, count), answer in zip(requests, answers, strict=True)
        ]

    async def read_table(
        self, unit: int, regmap: RegisterMap, table: int, *, priority: int = URGENT
    ) -> tuple[int, Sequence[int]]:
        """Read one register table of a node (a command's read-back): ``(start, words)``."""
        plan = regmap.blocks(table)
        if not plan:
            return (0, [])
        answers = await self._exchange(
            unit, [self._read_pdu(unit, table, s, c) for s, c in plan], self.config.timeout
        )
        words: list[int] = []
        for (start, count), answer in zip(plan, answers, strict=True):
            words.extend(self._check_read(unit, table, start, count, answer))
        return (plan[0][0], words)

    async def write(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Write holding registers of one node (function 16) and check its echo."""
        self._count_command(unit, priority)
        pdu = modbus.write_multiple_pdu(address, values)
        (answer,) = await self._exchange(unit, [pdu], self.config.timeout)
        where = f"unit {unit} on {self.name}"
        self._check_exception(where, answer, _FC_WRITE_MULTIPLE, f"write {len(values)} register(s) at {address}")
        if len(answer) != 6 or answer[1] != _FC_WRITE_MULTIPLE or answer[2:6] != pdu[1:5]:
            self.stats.errors += 1
            raise NodeError(f"{where}: write at {address}: the answer does not echo the request")

    async def write_coils(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Set coils of one node (function 05 for one, 15 for several) and check its echo."""
        fc = 5 if len(values) == 1 else 15
        pdu = bits.write_coil_pdu(address, values[0]) if fc == 5 else bits.write_coils_pdu(address, list(values))
        (answer,) = await self._exchange(unit, [pdu], self.config.timeout)
        where = f"unit {unit} on {self.name}"
        self._check_exception(where, answer, fc, f"write {len(values)} coil(s) at {address}")
        if len(answer) != 6 or answer[1] != fc or answer[2:6] != pdu[1:5]:
            self.stats.errors += 1
            raise NodeError(f"{where}: coil write at {address}: the answer does not echo the request")

    async def broadcast(self, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Write every configured unit (Modbus TCP has no broadcast); failures show in the read-back."""
        results = await asyncio.gather(
            *(self.write(unit, address, values, priority=priority) for unit in self.units),
            return_exceptions=True,
        )
        for unit, result in zip(self.units, results, strict=True):
            if isinstance(result, Exception):
                log.debug("bus %s: broadcast write to unit %d failed: %s", self.name, unit, result)
        self.stats.broadcasts += 1

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        if self._link is not None:
            self._link.abort()
            self._link = None
        self.stats.connected = False

    def _read_pdu(self, unit: int, table: int, start: int, count: int) -> bytes:
        key = (unit, table, start, count)
        pdu = self._reads.get(key)
        if pdu is None:
            if table in BIT_TABLES:  # a table's code is its read function: 1 coils, 2 discrete inputs
                pdu = self._reads[key] = bits.read_bits_pdu(table, start, count)
            else:
                fc = _FC_READ_HOLDING if table == HOLDING else _FC_READ_INPUT
                pdu = self._reads[key] = modbus.read_pdu(fc, start, count)
        return pdu

    async def _exchange(self, unit: int, pdus: list[bytes], within: float) -> list[bytes]:
        """Send every PDU at once and wait for all answers (unit + PDU each) for ``within`` seconds."""
        link = self._link
        if link is None or link.closed:
            link = await self._connect()
        sent = [link.send(unit, pdu) for pdu in pdus]
        # One timer for the whole exchange: the answers usually arrive together.
        timer = asyncio.get_running_loop().call_later(within, _expire, link, sent)
        try:
            answers = [await fut for _, fut in sent]
        except _Expired:
            self.stats.timeouts += 1
            raise NodeTimeout(f"unit {unit} on {self.name}: no answer within {within:g} s") from None
        except ConnectionError as exc:
            self.stats.errors += 1
            self._lost(link)
            raise BusUnavailable(f"bus {self.name}: {exc}") from exc
        finally:
            timer.cancel()
        self.stats.requests += len(pdus)
        return answers

    def _check_exception(self, where: str, answer: bytes, fc: int, what: str) -> None:
        if len(answer) >= 3 and answer[1] == fc | 0x80:
            self.stats.errors += 1
            raise NodeError(f"{where}: {what}: Modbus exception {answer[2]}", answer[2])

    def _check_read(self, unit: int, table: int, start: int, count: int, answer: bytes) -> Sequence[int]:
        if table in BIT_TABLES and answer[:1] == bytes((unit,)) and answer[1:2] == bytes((table,)):
            try:
                found: list[int] = bits.read_bits_answer(answer[1:], table, count)
                return found
            except ValueError as exc:
                self.stats.errors += 1
                raise NodeError(f"unit {unit} on {self.name}: {exc}") from None
        fc = table if table in BIT_TABLES else _FC_READ_HOLDING if table == HOLDING else _FC_READ_INPUT
        if len(answer) == 3 + 2 * count and answer[1] == fc and answer[2] == 2 * count and answer[0] == unit:
            return _words_of(count).unpack_from(answer, 3)
        where = f"unit {unit} on {self.name}"
        self._check_exception(where, answer, fc, f"read {count} {TABLE_NAMES[table]} at {start}")
        self.stats.errors += 1
        raise NodeError(f"{where}: asked for {count} {TABLE_NAMES[table]} values at {start}, "
                        f"got a {len(answer)}-byte answer")

    async def _connect(self) -> _Link:
        if self._connecting is not None:  # another poll is already connecting: share its outcome
            return await asyncio.shield(self._connecting)
        now = time.monotonic()
        if now < self._next_attempt:
            raise BusUnavailable(
                f"bus {self.name}: {self.config.host}:{self.config.port} unreachable (retrying in "
                f"{self._next_attempt - now:.1f} s)"
            )
        loop = asyncio.get_running_loop()
        self._connecting = loop.create_future()
        try:
            try:
                _, link = await asyncio.wait_for(
                    loop.create_connection(lambda: _Link(self.name), self.config.host, self.config.port),
                    CONNECT_TIMEOUT,
                )
            except (OSError, TimeoutError) as exc:
                delay = min(RECONNECT_CAP, RECONNECT_FIRST * 2**self._failures)
                self._failures = min(self._failures + 1, 16)
                self._next_attempt = time.monotonic() + delay
                self.stats.errors += 1
                error = BusUnavailable(
                    f"bus {self.name}: cannot connect to {self.config.host}:{self.config.port}: {exc}"
                )
                self._connecting.set_exception(error)
                self._connecting.exception()  # retrieved: no "never retrieved" warning if nobody waits
                raise error from exc
            self._failures = 0
            self._link = link
            self.stats.connected = True
            log.info("bus %s: connected to %s:%d", self.name, self.config.host, self.config.port)
            self._connecting.set_result(link)
            return link
        finally:
            self._connecting = None

    def _lost(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
            self.stats.connected = False
            log.warning("bus %s: connection to %s:%d lost", self.name, self.config.host, self.config.port)
