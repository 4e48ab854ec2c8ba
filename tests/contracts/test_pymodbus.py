"""What gateway/transport/modbus_rtu.py relies on from pymodbus's serial client (a pymodbus server as the peer).

The transport maps pymodbus outcomes onto its three errors (NodeError, NodeTimeout, BusUnavailable),
changes the response timeout per transaction, and broadcasts without waiting for an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pymodbus.client import AsyncModbusSerialClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

HOLDING = list(range(100, 110))
SILENT = 9
"""A unit whose answers the server swallows, as a node that is off the line."""
REFUSING = 2
"""A unit that answers every request with exception 2 (illegal data address)."""


class Node:
    """One simulated unit: ten holding registers, and every request it sees recorded."""

    def __init__(self, unit: int) -> None:
        self.unit = unit
        self.requests: list[tuple[int, int, list[int]]] = []
        self.written = asyncio.Event()

    async def action(
        self, fc: int, _start: int, address: int, _count: int, _registers: list[int], values: Any
    ) -> ExcCodes | None:
        self.requests.append((fc, address, [int(v) for v in values or []]))
        if fc == 16:
            self.written.set()
        return ExcCodes.ILLEGAL_ADDRESS if self.unit == REFUSING else None

    def device(self) -> SimDevice:
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        registers = [SimData(0, values=list(HOLDING), datatype=DataType.REGISTERS)]
        return SimDevice(self.unit, simdata=(bits, list(bits), registers, list(registers)), action=self.action)


@contextlib.asynccontextmanager
async def line(
    pty_pair: tuple[str, str], nodes: list[Node], *, response_timeout: float = 3.0
) -> AsyncIterator[AsyncModbusSerialClient]:
    """A pymodbus RTU server for ``nodes`` on one end of the pty pair; on the other a client set up as the
    gateway's (no retries of its own, no automatic reconnection)."""
    master, server_end = pty_pair

    def swallow_silent(sending: bool, data: bytes) -> bytes:
        return b"" if sending and data and data[0] == SILENT else data

    server = ModbusSerialServer([n.device() for n in nodes], port=server_end, baudrate=19200, parity="N",
                                broadcast_enable=True, trace_packet=swallow_silent)
    await server.serve_forever(background=True)
    client = AsyncModbusSerialClient(port=master, baudrate=19200, bytesize=8, parity="N", stopbits=1,
                                     timeout=response_timeout, retries=0, reconnect_delay=0)
    try:
        assert await client.connect()
        yield client
    finally:
        client.close()
        await server.shutdown()


def test_a_read_returns_exactly_the_registers_asked_for(pty_pair) -> None:
    async def main() -> None:
        async with line(pty_pair, [Node(1)]) as client:
            pdu = await client.read_holding_registers(2, count=5, device_id=1)
            assert not pdu.isError()
            assert pdu.registers == HOLDING[2:7]

    asyncio.run(main())


def test_an_exception_response_is_returned_not_raised_with_its_code(pty_pair) -> None:
    """A node's Modbus exception comes back as an error PDU carrying the code (the transport's NodeError)."""

    async def main() -> None:
        async with line(pty_pair, [Node(REFUSING)]) as client:
            pdu = await client.read_holding_registers(0, count=5, device_id=REFUSING)
            assert pdu.isError()
            assert pdu.exception_code == 2
            write = await client.write_registers(0, [1, 2], device_id=REFUSING)
            assert write.isError() and write.exception_code == 2

    asyncio.run(main())


def test_no_answer_raises_modbus_io_exception_within_the_adjusted_timeout(pty_pair) -> None:
    """A silent node raises ModbusIOException (the transport's NodeTimeout), not ConnectionException, and the
    timeout set through ``ctx.comm_params.timeout_connect`` before a transaction is the one that applies
    (the client was built with an hour: the test would hang if the change were ignored)."""

    async def main() -> None:
        async with line(pty_pair, [Node(1), Node(SILENT)], response_timeout=3600) as client:
            client.ctx.comm_params.timeout_connect = 0.3
            with pytest.raises(ModbusIOException) as caught:
                async with asyncio.timeout(120):
                    await client.read_holding_registers(0, count=5, device_id=SILENT)
            assert not isinstance(caught.value, ConnectionException)
            assert isinstance(caught.value, ModbusException)
            pdu = await client.read_holding_registers(0, count=2, device_id=1)  # the line still works
            assert pdu.registers == HOLDING[:2]

    asyncio.run(main())


def test_a_broadcast_returns_without_an_answer_and_reaches_every_unit(pty_pair) -> None:
    """Unit 0 with ``no_response_expected``: the call returns None without waiting; every node applies the write.

    (The transport then keeps the line quiet for a turnaround before its next request, as the serial line
    spec asks; the test waits for the nodes instead.)
    """
    nodes = [Node(1), Node(3)]

    async def main() -> None:
        async with line(pty_pair, nodes, response_timeout=3600) as client:
            async with asyncio.timeout(120):  # would wait an hour for an answer that never comes
                result = await client.write_registers(3, [11, 12], device_id=0, no_response_expected=True)
            assert result is None
            async with asyncio.timeout(60):
                for node in nodes:
                    await node.written.wait()
            assert all(node.requests == [(16, 3, [11, 12])] for node in nodes)
            client.ctx.comm_params.timeout_connect = 5
            pdu = await client.read_holding_registers(0, count=5, device_id=1)
            assert pdu.registers == [*HOLDING[:3], 11, 12]

    asyncio.run(main())


def test_connect_to_a_missing_device_returns_false(tmp_path) -> None:
    """The transport reports an unopenable line as BusUnavailable from this False (or from an exception)."""

    async def main() -> None:
        client = AsyncModbusSerialClient(port=str(tmp_path / "no-such-tty"), baudrate=19200, retries=0,
                                         reconnect_delay=0)
        try:
            assert await client.connect() is False
            assert not client.connected
        finally:
            client.close()

    asyncio.run(main())


def test_the_internals_the_transport_times_the_line_by_are_there(pty_pair) -> None:
    """t3.5 counts from the answer's arrival (``ctx.data_received``, wrapped per instance) and a broadcast's
    turnaround from the frame's end (``ctx.transport.sync_serial`` for tcdrain, ``intern_write_buffer`` for
    what is still queued). None is public API: this test is where an upgrade that moves them shows."""

    async def main() -> None:
        async with line(pty_pair, [Node(1)]) as client:
            protocol = client.ctx
            seen: list[bytes] = []
            receive = protocol.data_received

            def stamped(data: bytes) -> None:
                seen.append(bytes(data))
                receive(data)

            protocol.data_received = stamped  # type: ignore[method-assign]
            pdu = await client.read_holding_registers(0, count=3, device_id=1)
            assert pdu.registers == HOLDING[:3]
            assert b"".join(seen)[:3] == bytes([1, 3, 6])  # the answer came through the wrapper
            transport = protocol.transport
            assert hasattr(transport, "intern_write_buffer") and not transport.intern_write_buffer
            assert transport.sync_serial.fileno() >= 0

    asyncio.run(main())
