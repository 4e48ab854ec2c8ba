"""Modbus TCP node simulators: many units per server, several servers per process, cheap answers.

A load generator for the gateway's Modbus TCP path (``streetedge bench load``)
and a peer for its tests. Each server listens on one loopback port and serves
units ``1..units`` of one role (the lamp by default), laid out by the role's
register map in ``protocols/roles``: holding registers start at their minimum
(or 0) and can be written (function 16, checked by the map's own write rule);
input registers hold plausible constants, and ``seq`` and ``uptime`` grow by one
on every input read that includes them (one per poll: a new sample, as a node's
do). Unknown units answer exception 11 (gateway target failed to respond), like a
TCP-to-RTU gateway; a unit marked silent answers nothing.

Answers are built with one ``struct`` call per request, so that a handful of
simulator processes can keep a gateway busy on two cores (a pymodbus server
costs several times more CPU per request). The pymodbus server is still what the
tests use as the SDM630 meter.

Run ``python -m tools.sim.tcp_lamps --port 15020 --servers 4 --units 50``: it
prints ``{"ports": [...], "units": 50}`` once listening, and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import struct
import sys
from collections.abc import Iterable
from typing import Any

from gateway.contracts import HOLDING, INPUT, RegisterMap, load_role
from protocols.errors import ModbusException

_HEAD = struct.Struct(">HHHBB")  # tid, protocol, length, unit, function
_READ = struct.Struct(">HH")
_EX = struct.Struct(">HHHBBB")
_EX_ILLEGAL_FUNCTION = 1
_EX_ILLEGAL_ADDRESS = 2
_EX_ILLEGAL_VALUE = 3
_EX_GATEWAY_TARGET = 11
_DEFAULTS = {
    "power": 41.5, "voltage": 230.1, "current": 0.181, "energy": 123456, "temperature": 21.5,
    "status": 1, "uptime": 3600, "firmware": 0x0100, "dim_level": 100, "relay": 1,
}


class SimNode:
    """One simulated unit: its register words, laid out by the role's map.

    Args:
        unit: Modbus unit address.
        role: role name (``protocols/roles``).
        values: engineering values of some registers (the rest get defaults).
    """

    def __init__(self, unit: int, role: str = "lamp", **values: float) -> None:
        self.unit = unit
        self.regmap: RegisterMap = load_role(role)
        self.silent = False
        self.reads = 0
        self.writes: list[tuple[int, list[int]]] = []
        size = {t: max((r.address + r.width for r in self.regmap.registers if r.table == t), default=0)
                for t in (HOLDING, INPUT)}
        self.words = {t: [0] * size[t] for t in (HOLDING, INPUT)}
        for reg in self.regmap.registers:
            raw: float
            if reg.name == "role":
                raw = self.regmap.role_id
            elif reg.name in values or reg.name in _DEFAULTS:
                raw = reg.to_raw(values.get(reg.name, _DEFAULTS.get(reg.name, 0)))
            else:
                bounds: Any = reg  # protocols' Register has bounds; the typed contract leaves them out
                raw = bounds.minimum if bounds.minimum > 0 else (0 if bounds.maximum >= 0 else bounds.maximum)
            self._put(reg.name, raw)
        # Counters that grow on every input read, as a node's do.
        self._counting = [r for r in self.regmap.registers if r.name in ("seq", "uptime") and r.table == INPUT]

    def _put(self, name: str, raw: float) -> None:
        reg = self.regmap[name]
        words = self.words[reg.table]
        for i, w in enumerate(reg.words(raw)):
            words[reg.address + i] = w

    def value(self, name: str) -> float:
        """Engineering value of a register, as the node holds it now."""
        reg = self.regmap[name]
        return reg.value(reg.from_words(self.words[reg.table], reg.address))

    def read(self, table: int, address: int, count: int) -> list[int]:
        """Words of a read (ModbusException for a range outside the map)."""
        words = self.words[table]
        if address + count > len(words):
            raise ModbusException(table, _EX_ILLEGAL_ADDRESS)
        if table == INPUT:
            self.reads += 1
            # A new sample for each read that shows the counter: a gateway's poll that also reads the counters
            # block (a second request) is still one sample, one seq, as on a node.
            for reg in self._counting:
                if address <= reg.address < address + count:
                    raw = (int(reg.from_words(words, reg.address)) + 1) & 0xFFFFFFFF
                    words[reg.address : reg.address + reg.width] = reg.words(raw)
        return words[address : address + count]

    def write(self, address: int, values: list[int]) -> None:
        """Write holding words after the map's own check (ModbusException when refused)."""
        self.regmap.check_write(address, values, len(values))  # type: ignore[attr-defined]
        self.words[HOLDING][address : address + len(values)] = values
        self.writes.append((address, values))


class _Session(asyncio.Protocol):
    def __init__(self, nodes: dict[int, SimNode], counters: list[int], sessions: set[_Session]) -> None:
        self.nodes = nodes
        self.counters = counters
        self.sessions = sessions
        self.transport: asyncio.Transport | None = None
        self._rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.sessions.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._rest:
            data = self._rest + data
            self._rest = b""
        out: list[bytes] = []
        i, n = 0, len(data)
        while n - i >= 8:
            tid, proto, length, unit, fc = _HEAD.unpack_from(data, i)
            end = i + 6 + length
            if proto != 0 or length < 2 or length > 254:
                assert self.transport is not None
                self.transport.close()
                return
            if end > n:
                break
            answer = self._answer(tid, unit, fc, data[i + 8 : end])
            if answer:
                out.append(answer)
            i = end
        if i < n:
            self._rest = data[i:]
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out))

    def _answer(self, tid: int, unit: int, fc: int, body: bytes) -> bytes:
        self.counters[0] += 1
        node = self.nodes.get(unit)
        if node is None:
            return _EX.pack(tid, 0, 3, unit, fc | 0x80, _EX_GATEWAY_TARGET)
        if node.silent:
            return b""
        try:
            if fc in (3, 4) and len(body) == 4:
                address, count = _READ.unpack(body)
                if not 1 <= count <= 125:
                    raise ModbusException(fc, _EX_ILLEGAL_VALUE)
                words = node.read(HOLDING if fc == 3 else INPUT, address, count)
                return struct.pack(f">HHHBBB{count}H", tid, 0, 3 + 2 * count, unit, fc, 2 * count, *words)
            if fc == 16 and len(body) >= 5:
                address, count, size = struct.unpack_from(">HHB", body)
                if size != 2 * count or len(body) != 5 + size or not 1 <= count <= 123:
                    raise ModbusException(fc, _EX_ILLEGAL_VALUE)
                node.write(address, list(struct.unpack_from(f">{count}H", body, 5)))
                return struct.pack(">HHHBBHH", tid, 0, 6, unit, fc, address, count)
            raise ModbusException(fc, _EX_ILLEGAL_FUNCTION)
        except ModbusException as exc:
            return _EX.pack(tid, 0, 3, unit, fc | 0x80, exc.code)


class TcpNodeServer:
    """One Modbus TCP server on loopback serving ``nodes`` (use ``async with``).

    Attributes:
        port: the bound port (a free one when 0 was asked).
        requests: requests answered or refused so far.
    """

    def __init__(self, nodes: Iterable[SimNode], port: int = 0, host: str = "127.0.0.1") -> None:
        self.nodes = {n.unit: n for n in nodes}
        self.host = host
        self.port = port
        self._counters = [0]
        self._sessions: set[_Session] = set()
        self._server: asyncio.Server | None = None

    @property
    def requests(self) -> int:
        """Requests received so far."""
        return self._counters[0]

    async def start(self) -> None:
        """Listen (the port is known afterwards)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Session(self.nodes, self._counters, self._sessions), self.host, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        if self._server is not None:
            self._server.close()
            for session in list(self._sessions):
                if session.transport is not None:
                    session.transport.abort()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> TcpNodeServer:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()


async def serve(port: int, servers: int, units: int, role: str) -> None:
    """Serve ``servers`` ports from ``port`` on, ``units`` units each, until SIGTERM/SIGINT."""
    running = []
    for k in range(servers):
        server = TcpNodeServer([SimNode(u, role) for u in range(1, units + 1)], port + k if port else 0)
        await server.start()
        running.append(server)
    print(json.dumps({"ports": [s.port for s in running], "units": units}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in running:
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: serve simulated nodes on loopback."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="first port (0: free ports)")
    p.add_argument("--servers", type=int, default=1, help="servers (ports) in this process")
    p.add_argument("--units", type=int, default=10, help="units per server")
    p.add_argument("--role", default="lamp")
    a = p.parse_args(argv)
    asyncio.run(serve(a.port, a.servers, a.units, a.role))
    return 0


if __name__ == "__main__":
    sys.exit(main())
