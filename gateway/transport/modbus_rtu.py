"""One RS-485 line: a pymodbus RTU client that carries one transaction at a time.

:class:`ModbusBus` is a thin adapter: it knows serial settings, the one-at-a-time
rule of a multi-drop line, the turnaround pause after a broadcast, and how to
turn pymodbus outcomes into three gateway errors. What the registers mean is
the register map's business (``protocols/regmap.py``): the bus reads the blocks
the map asks for and hands back raw words.

Access is serialised by a :class:`~gateway.transport.priority_lock.PriorityLock`, so an
operator command (``URGENT``) overtakes polls that are waiting for the line, and
a poll that holds the line but is still waiting out t3.5 gives way to it.
Retries are ours, not pymodbus's: the line is released during the backoff
between two attempts, so other nodes keep being served, and each node may have
its own response timeout.

This is the ``rtu`` backend of :class:`gateway.transport.bus.Bus`; the errors live there
and are re-exported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.exceptions import ModbusException as PymodbusError
from pymodbus.pdu import FileRecord, ModbusPDU

from gateway.contracts import COIL, DISCRETE, HOLDING, TABLE_NAMES, TABLES, RegisterMap
from gateway.service.config import BusConfig
from gateway.service.stats import BusStats
from gateway.transport.bus import Blocks, Bus, BusError, BusUnavailable, NodeError, NodeTimeout
from gateway.transport.priority_lock import ROUTINE, URGENT, PriorityLock
from gateway.transport.rtu_wire import WireClock, drained
from gateway.transport.serial_device import open_client
from gateway.transport.serial_timing import TURNAROUND, char_bits, silence

__all__ = ["TURNAROUND", "Blocks", "BusError", "BusUnavailable", "ModbusBus", "NodeError", "NodeTimeout", "silence"]

log = logging.getLogger(__name__)

ILLEGAL_FUNCTION = 1
"""The Modbus exception code of a function the node does not have."""
RECONNECT_INTERVAL = 2.0
"""Seconds between attempts to reopen a serial device that failed to open."""

class ModbusBus(Bus):
    """The Modbus RTU master of one ``[[bus]]`` (``type = "rtu"``).

    Args:
        config: the bus's serial settings.
        stats: counters to update; a fresh :class:`BusStats` when omitted.
    """

    def __init__(self, config: BusConfig, stats: BusStats | None = None) -> None:
        self.config = config
        self.name = config.name
        self.stats = stats or BusStats(config.name)
        self._lock = PriorityLock()
        self._client: AsyncModbusSerialClient | None = None
        self._next_open = 0.0
        self._timeout = config.timeout
        self.silence = silence(config.baud, char_bits(config.parity, config.stopbits))
        """t3.5: the line stays quiet this long after every frame before the master sends again."""
        self.wire = WireClock(self.silence)
        """When the line may carry the next frame, and the work that waits for it (:mod:`.rtu_wire`)."""
        self._two_step: set[int] = set()  # units that refused function 23 (see write_read)

    def __repr__(self) -> str:
        return f"<ModbusBus {self.name} {self.config.device}>"

    def after_send(self, work: Callable[[], None]) -> None:
        """Run ``work`` once the next frame is on the wire, while the node answers (soon if no frame follows).

        A poller hands a poll's readings on this way: their handling then does
        not sit in the silence between an answer and the next request.
        """
        self.wire.after_send(work)

    async def read_node(
        self, unit: int, regmap: RegisterMap, *, priority: int = ROUTINE,
        response_timeout: float | None = None, retries: int | None = None,
    ) -> Blocks:
        """Read every register of a node: one request per table (register merging).

        Returns ``{table: (start, words)}`` ready for ``regmap.decode(table, start, words)``.
        ``response_timeout`` and ``retries`` override the bus's for this node; the
        line is free for others during the backoff between attempts. Raises
        NodeTimeout, NodeError or BusUnavailable.
        """
        wait = self.config.timeout if response_timeout is None else response_timeout
        tries = self.config.retries if retries is None else retries
        attempt = 0
        while True:
            try:
                blocks: Blocks = {}
                for table in TABLES:
                    if not regmap.blocks(table):
                        continue
                    # The line is released between the tables: an urgent command waits one transaction at most.
                    async with self._lock.hold(priority):
                        self._set_timeout(wait)
                        blocks[table] = await self._read_table(unit, regmap, table)
                return blocks
            except NodeTimeout:
                if attempt >= tries:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(self.config.backoff * 2**attempt)
                attempt += 1

    async def read_requests(
        self, unit: int, requests: Sequence[tuple[int, int, int]], *, priority: int = ROUTINE,
        response_timeout: float | None = None, retries: int | None = None,
    ) -> list[Sequence[int]]:
        """Words of each ``(table, start, count)`` read of a poll plan, in order.

        Each request holds the line for its own transaction only, so an urgent
        command waits for one transaction at most, never for a whole poll; the
        poll keeps the line against worse priorities (update chunks) from one
        request to the next, so none slips in between. A request that times out
        is retried (``retries``, with backoff, the line free for all in between);
        NodeTimeout, NodeError or BusUnavailable otherwise.
        """
        wait = self.config.timeout if response_timeout is None else response_timeout
        tries = self.config.retries if retries is None else retries
        out: list[Sequence[int]] = []
        with contextlib.ExitStack() as kept:
            kept.enter_context(self._lock.keep(priority))
            for table, start, count in requests:
                attempt = 0
                while True:
                    try:
                        async with self._lock.hold(priority):
                            self._set_timeout(wait)
                            out.append(await self._read_block(unit, table, start, count))
                        break
                    except NodeTimeout:
                        kept.close()  # a node that does not answer keeps nobody waiting through its retries
                        if attempt >= tries:
                            raise
                        self.stats.retries += 1
                        await asyncio.sleep(self.config.backoff * 2**attempt)
                        attempt += 1
        return out

    async def read_table(
        self, unit: int, regmap: RegisterMap, table: int, *, priority: int = URGENT
    ) -> tuple[int, list[int]]:
        """Read one register table of a node (a command's read-back): ``(start, words)``.

        An unanswered read is retried like a poll's (``retries``, backoff, the line
        free in between): one answer lost to a collision or a node's stall must not
        leave a command unconfirmed while the node holds the commanded value.
        """
        attempt = 0
        while True:
            try:
                async with self._lock.hold(priority):
                    self._set_timeout(self.config.timeout)
                    return await self._read_table(unit, regmap, table)
            except NodeTimeout:
                if attempt >= self.config.retries:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(self.config.backoff * 2**attempt)
                attempt += 1

    async def write(
        self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT
    ) -> None:
        """Write holding registers of one node (function 16) and wait for its answer."""
        self._count_command(unit, priority)  # counted even if it fails: the node may have taken it
        await self._write_registers(unit, address, values, priority)

    async def _write_registers(self, unit: int, address: int, values: Sequence[int], priority: int) -> None:
        async with self._lock.hold(priority):
            self._set_timeout(self.config.timeout)
            client = await self._ready()
            await self._call(unit, f"write {len(values)} register(s) at {address}",
                             client.write_registers(address, list(values), device_id=unit))

    async def write_read(
        self, unit: int, address: int, values: Sequence[int], regmap: RegisterMap, *, priority: int = URGENT
    ) -> tuple[int, Sequence[int]]:
        """Write holding registers and read ``regmap``'s holding block back in one transaction (function 23).

        The write goes first (spec 6.17), so the answer holds the node's state after it: a command's write and
        read-back for the wire time of one. Only the firmware's roles are asked (a device profile's meter may
        not know function 23, and some devices ignore a function they lack instead of refusing it); a node that
        answers exception 01 (no function 23, so nothing written) gets two transactions, then and from then on;
        so does a map of several blocks.
        """
        blocks = regmap.blocks(HOLDING)
        if not regmap.role_id or unit in self._two_step or len(blocks) != 1:
            return await super().write_read(unit, address, values, regmap, priority=priority)
        start, count = blocks[0]
        self._count_command(unit, priority)
        try:
            async with self._lock.hold(priority):
                self._set_timeout(self.config.timeout)
                client = await self._ready()
                pdu = await self._call(unit, f"write {len(values)} register(s) at {address}, read {count} at {start}",
                                       client.readwrite_registers(read_address=start, read_count=count,
                                                                  write_address=address, values=list(values),
                                                                  device_id=unit))
        except NodeError as exc:
            if exc.code != ILLEGAL_FUNCTION:
                raise
            self._two_step.add(unit)  # nothing written; the same command, already counted, in two transactions
            await self._write_registers(unit, address, values, priority)
            return await self.read_table(unit, regmap, HOLDING, priority=priority)
        if len(pdu.registers) != count:
            self.stats.errors += 1
            raise NodeError(f"unit {unit} on {self.name}: asked for {count} values, got {len(pdu.registers)}")
        return start, list(pdu.registers)

    async def write_coils(self, unit: int, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Set coils of one node (function 05 for one, 15 for several) and wait for its answer."""
        async with self._lock.hold(priority):
            self._set_timeout(self.config.timeout)
            client = await self._ready()
            request = (
                client.write_coil(address, bool(values[0]), device_id=unit)
                if len(values) == 1
                else client.write_coils(address, [bool(b) for b in values], device_id=unit)
            )
            await self._call(unit, f"write {len(values)} coil(s) at {address}", request)

    async def broadcast(self, address: int, values: Sequence[int], *, priority: int = URGENT) -> None:
        """Write holding registers of every node on the line at once (unit 0, no answer).

        Nobody confirms a broadcast: read the nodes back to know it worked. The
        next request waits :data:`TURNAROUND` so slow nodes can finish the write.
        """
        self._count_command(0, priority)
        async with self._lock.hold(priority):
            client = await self._ready()
            try:
                await client.write_registers(
                    address, list(values), device_id=0, no_response_expected=True
                )
            except PymodbusError as exc:
                self.stats.errors += 1
                raise BusUnavailable(f"bus {self.name}: broadcast failed: {exc}") from exc
            self.stats.requests += 1
            self.stats.broadcasts += 1
            await drained(client)
            # Drained: the frame is on the wire (a UART) or read by the other end (a pty, which then still
            # takes the characters' time on a paced line). The turnaround counts from the frame's end.
            on_wire = (9 + 2 * len(values)) * char_bits(self.config.parity, self.config.stopbits) / self.config.baud
            self.wire.quiet_until = time.monotonic() + on_wire + TURNAROUND

    async def file_record(self, unit: int, file: int, record: int, *, data: bytes = b"", count: int = 0,
                          priority: int = ROUTINE) -> bytes:
        """Write ``data`` to one file record (function 21; unit 0 broadcasts it), or read ``count`` words (20)."""
        async with self._lock.hold(priority):
            self._set_timeout(self.config.timeout)
            client = await self._ready()
            if not data:  # pymodbus takes a read's length in bytes (and turns it into words)
                pdu = await self._call(unit, f"read file {file} record {record}", client.read_file_record(
                    [FileRecord(file_number=file, record_number=record, record_length=2 * count)], device_id=unit))
                found = getattr(pdu, "records", None)  # a ReadFileRecordResponse
                return bytes(found[0].record_data) if found else b""
            records = [FileRecord(file_number=file, record_number=record, record_data=data)]
            if unit:
                pdu = await self._call(unit, f"write file {file} record {record}",
                                       client.write_file_record(records, device_id=unit))
                # The answer is the request's echo (spec 6.15): one that is not (a late answer to an earlier
                # write, taken for this one's) must not count as this record stored.
                echo = [(r.file_number, r.record_number, bytes(r.record_data)) for r in getattr(pdu, "records", [])]
                if echo != [(file, record, bytes(data))]:
                    self.stats.errors += 1
                    raise NodeError(f"unit {unit} on {self.name}: the answer to write file {file} record {record} "
                                    "does not echo it")
                return b""
            try:
                await client.write_file_record(records, device_id=0, no_response_expected=True)
            except PymodbusError as exc:
                raise BusUnavailable(f"bus {self.name}: broadcast failed: {exc}") from exc
            await drained(client)  # as broadcast(): the turnaround counts from the frame's end
            bits = char_bits(self.config.parity, self.config.stopbits)
            self.wire.quiet_until = time.monotonic() + (12 + len(data)) * bits / self.config.baud + TURNAROUND
            self.stats.broadcasts += 1
            return b""

    def _set_timeout(self, seconds: float) -> None:
        """The response timeout of the next transaction (we hold the line, so nobody else's is running)."""
        self._timeout = seconds
        if self._client is not None:
            self._client.ctx.comm_params.timeout_connect = seconds

    def close(self) -> None:
        """Close the serial device; the next transaction reopens it. Work left for the next frame runs now."""
        self.wire.flush()
        if self._client is not None:
            self._client.close()
            self._client = None
        self.stats.connected = False

    async def _read_table(self, unit: int, regmap: RegisterMap, table: int) -> tuple[int, list[int]]:
        blocks = regmap.blocks(table)
        if not blocks:
            return (0, [])
        first = blocks[0][0]
        words: list[int] = []
        for start, count in blocks:
            if start != first + len(words):  # role maps are dense; keep the guarantee explicit
                raise NodeError(f"{regmap.role}: {TABLE_NAMES[table]} blocks are not contiguous")
            words.extend(await self._read_block(unit, table, start, count))
        return (first, words)

    async def _read_block(self, unit: int, table: int, start: int, count: int) -> list[int]:
        """One read request (function 03, 04, 01 or 02); the caller holds the line."""
        client = await self._ready()
        if table == HOLDING:
            request = client.read_holding_registers(start, count=count, device_id=unit)
        elif table == COIL:
            request = client.read_coils(start, count=count, device_id=unit)
        elif table == DISCRETE:
            request = client.read_discrete_inputs(start, count=count, device_id=unit)
        else:
            request = client.read_input_registers(start, count=count, device_id=unit)
        pdu = await self._call(unit, f"read {count} {TABLE_NAMES[table]} at {start}", request)
        # pymodbus pads bits to whole bytes: the padding is not the node's
        got = [int(b) for b in pdu.bits[:count]] if table in (COIL, DISCRETE) else list(pdu.registers)
        if len(got) != count:
            self.stats.errors += 1
            raise NodeError(f"unit {unit} on {self.name}: asked for {count} values, got {len(got)}")
        return got

    async def _call(self, unit: int, what: str, request: Awaitable[ModbusPDU]) -> ModbusPDU:
        """Await one pymodbus request and map its outcome to our errors."""
        where = f"unit {unit} on {self.name}"
        asked = time.monotonic()
        try:
            try:
                pdu = await request
            finally:
                # Whatever came back (or nothing), the next frame waits out t3.5 after this one: from the
                # answer's last bytes when they were seen arriving, else from now.
                self.wire.frame_done(asked)
        except ModbusIOException as exc:
            self.stats.timeouts += 1
            raise NodeTimeout(f"{where}: no answer to {what}") from exc
        except ConnectionException as exc:
            self.stats.errors += 1
            self.close()
            raise BusUnavailable(f"bus {self.name}: {exc}") from exc
        except PymodbusError as exc:
            self.stats.errors += 1
            raise NodeError(f"{where}: {what} failed: {exc}") from exc
        if pdu.isError():
            self.stats.errors += 1
            raise NodeError(
                f"{where}: {what}: Modbus exception {pdu.exception_code}", pdu.exception_code
            )
        self.stats.requests += 1
        return pdu

    async def _ready(self) -> AsyncModbusSerialClient:
        """The connected client, opening the device if needed; honours t3.5 and the broadcast turnaround."""
        while True:
            client = self._client
            if client is None or not client.connected:
                client = await self._open()
            # Asleep for most of the silence; its last part is waited out when the frame is written.
            await self.wire.wait_quiet()
            if not self._lock.better_waiting():
                return client
            # Nothing sent yet: a command that came during the silence goes first (its read-back after its write).
            mine = self._timeout
            await self._lock.give_way()
            self._set_timeout(mine)

    async def _open(self) -> AsyncModbusSerialClient:
        now = time.monotonic()
        if now < self._next_open:
            raise BusUnavailable(f"bus {self.name}: {self.config.device} is not open (retrying)")
        self._next_open = now + RECONNECT_INTERVAL
        self.close()
        cfg = self.config
        client = await open_client(cfg, self._timeout)
        log.info("bus %s: opened %s at %d 8%s%d", self.name, cfg.device, cfg.baud, cfg.parity, cfg.stopbits)
        self.wire.attach(client)
        self._client = client
        self.stats.connected = True
        self._next_open = 0.0
        return client

