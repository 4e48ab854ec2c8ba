"""Simulated third-party devices built from their device profiles, served by pymodbus's Modbus TCP server.

A :class:`ProfileDevice` lays out one unit's registers, coils and discrete
inputs by a profile (``gateway/profiles``): the same file the gateway polls the
device by. pymodbus answers the wire (functions 01-06, 15, 16), so the
gateway's own coil and register code talks to an independent implementation;
the profile decides what may be written: a write outside a writable register
or its range gets the exception a device sends (02 illegal address, 03 illegal
value), and nothing changes.

The device holds engineering values (:meth:`ProfileDevice.set`,
:meth:`ProfileDevice.value`); ``mirror`` wires a discrete input to a coil, the
way a relay module's feedback contact reports whether its relay really closed,
so a test can see a command change the device's world and not just a coil.

Run ``python -m tools.sim.profile_device --profile relay8 --units 1,2``: it
prints ``{"port": ..., "units": [...]}`` once listening, and serves until
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from gateway.contracts import BIT_TABLES, COIL, DISCRETE, HOLDING, INPUT, Number, RegisterMap
from gateway.profiles import Profile, load_profile, shipped_profile
from protocols.errors import ModbusException
from tools.broker import free_port

_BLOCK_OF = {1: COIL, 5: COIL, 15: COIL, 2: DISCRETE, 3: HOLDING, 6: HOLDING, 16: HOLDING, 4: INPUT}
_WRITES = (5, 6, 15, 16)


class ProfileDevice:
    """One simulated unit laid out by a profile.

    Args:
        unit: Modbus unit address.
        profile: the device's profile.
        values: engineering values of some registers (the rest start at their lowest writable value, or 0).
        mirror: discrete input name -> coil name: the input reads what the coil holds.
    """

    def __init__(
        self, unit: int, profile: Profile, values: Mapping[str, Number] | None = None,
        mirror: Mapping[str, str] | None = None,
    ) -> None:
        self.unit = unit
        self.profile = profile
        self.regmap: RegisterMap = profile.regmap
        self.mirror = dict(mirror or {})
        self.writes: list[tuple[int, int, list[int]]] = []
        """Accepted writes: (table, address, raw words or bits)."""
        self.reads = 0
        self._span: dict[int, tuple[int, int]] = {}
        for table in (COIL, DISCRETE, HOLDING, INPUT):
            blocks = self.regmap.blocks(table)
            if blocks:
                self._span[table] = (blocks[0][0], sum(count for _, count in blocks))
        self._words: dict[int, list[int]] = {t: [0] * count for t, (_, count) in self._span.items()}
        for reg in self.regmap.registers:
            bounds: Any = reg  # the typed contract leaves the protocols Register's bounds out
            low = 0 if bounds.minimum <= 0 <= bounds.maximum else bounds.minimum
            self._put(reg.name, low)
        for name, value in (values or {}).items():
            self.set(name, value)
        for name, coil in self.mirror.items():
            if self.regmap[name].table != DISCRETE or self.regmap[coil].table != COIL:
                raise ValueError(f"mirror {name!r} -> {coil!r}: a discrete input reads a coil")

    def set(self, name: str, value: Number) -> None:
        """Give a register (or bit) an engineering value, as the device's own measurement would."""
        self._put(name, self.regmap[name].to_raw(value))

    def value(self, name: str) -> Number:
        """The engineering value a register or bit holds now."""
        reg = self.regmap[name]
        start, _ = self._span[reg.table]
        return reg.value(reg.from_words(self._words[reg.table], reg.address - start))

    def _put(self, name: str, raw: Number) -> None:
        reg = self.regmap[name]
        start, _ = self._span[reg.table]
        words = self._words[reg.table]
        for i, word in enumerate(reg.words(raw)):
            words[reg.address - start + i] = word

    def simdevice(self) -> SimDevice:
        """The pymodbus device that answers for this unit."""
        blocks: list[list[SimData]] = []
        for table in (COIL, DISCRETE, HOLDING, INPUT):
            if table not in self._span:  # pymodbus wants every table: a stand-in that _action refuses
                kind = DataType.BITS if table in BIT_TABLES else DataType.REGISTERS
                blocks.append([SimData(0, values=[0] * (16 if table in BIT_TABLES else 1), datatype=kind)])
                continue
            start, count = self._span[table]
            if table in BIT_TABLES:  # pymodbus keeps bits 16 to a register, addressed by register
                first, last = start // 16, (start + count - 1) // 16
                blocks.append([SimData(first, values=[False] * 16 * (last - first + 1), datatype=DataType.BITS)])
            else:
                blocks.append([SimData(start, values=[0] * count, datatype=DataType.REGISTERS)])
        coils, discrete, holding, inputs = blocks
        return SimDevice(self.unit, simdata=(coils, discrete, holding, inputs), use_bit_addressing=True,
                         action=self._action)

    async def _action(
        self, fc: int, block_start: int, address: int, count: int, registers: list[int],
        values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _BLOCK_OF.get(fc)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if table not in self._span:
            return ExcCodes.ILLEGAL_ADDRESS
        if values and fc in _WRITES:
            new = [int(v) for v in values]
            try:
                self.regmap.check_write(address, new, len(new), table)  # type: ignore[attr-defined]
            except ModbusException as exc:
                return ExcCodes(exc.code)
            start, _ = self._span[table]
            self._words[table][address - start : address - start + len(new)] = new
            self.writes.append((table, address, new))
        else:
            self.reads += 1
        for name, coil in self.mirror.items():
            self._put(name, int(self.value(coil)))
        self._show(table, block_start, registers)
        return None

    def _show(self, table: int, block_start: int, registers: list[int]) -> None:
        """Copy the device's truth into pymodbus's block (bits packed 16 to a register, first bit lowest)."""
        start, count = self._span[table]
        words = self._words[table]
        if table not in BIT_TABLES:
            registers[:count] = words
            return
        for k in range(len(registers)):
            packed = 0
            for j in range(16):
                i = (block_start + k) * 16 + j - start
                if 0 <= i < count and words[i]:
                    packed |= 1 << j
            registers[k] = packed


@contextlib.asynccontextmanager
async def serve_devices(devices: Iterable[ProfileDevice], port: int, host: str = "127.0.0.1") -> AsyncIterator[
    asyncio.Server
]:
    """``devices`` answer Modbus TCP on ``host:port`` while the block runs.

    pymodbus's server (3.16) answers only the first of several requests that arrive
    together, and the gateway sends a node's tables at once; so a front takes the
    requests of each connection one at a time to a pymodbus server on a port of its
    own, as a TCP-to-RTU gateway queues them for its serial line.
    """
    inner = free_port()
    server = ModbusTcpServer([d.simdevice() for d in devices], address=(host, inner))
    await server.serve_forever(background=True)
    fronts: set[asyncio.Task[None]] = set()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        fronts.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(host, inner)
            with contextlib.closing(up_writer):
                while True:
                    request = await _mbap_frame(reader)
                    up_writer.write(request)
                    writer.write(await _mbap_frame(up_reader))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the gateway closed or reset its connection
        finally:
            writer.close()
            fronts.discard(task)

    front = await asyncio.start_server(relay, host, port)
    try:
        yield front
    finally:
        front.close()
        for task in list(fronts):
            task.cancel()
        await asyncio.gather(*fronts, return_exceptions=True)
        await server.shutdown()  # type: ignore[no-untyped-call]  # pymodbus leaves it unannotated


async def _mbap_frame(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(6)  # transaction, protocol, length (unit + PDU)
    return head + await reader.readexactly(int.from_bytes(head[4:6], "big"))


def profile_named(text: str) -> Profile:
    """A shipped profile by name, or a profile file by path (it ends in ``.toml``)."""
    return load_profile(Path(text)) if text.endswith(".toml") else shipped_profile(text)


async def serve(profile: Profile, port: int, units: Sequence[int], mirror: Mapping[str, str]) -> None:
    """Serve ``units`` of ``profile`` on ``port`` until SIGTERM/SIGINT."""
    devices = [ProfileDevice(u, profile, mirror=mirror) for u in units]
    async with serve_devices(devices, port):
        print(json.dumps({"port": port, "units": list(units), "profile": profile.name}), flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: serve simulated profile devices on loopback."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", required=True, help="a shipped profile's name, or a profile file (.toml)")
    p.add_argument("--port", type=int, default=15020, help="TCP port on 127.0.0.1")
    p.add_argument("--units", default="1", help="comma-separated unit addresses")
    p.add_argument("--mirror", action="append", default=[], metavar="INPUT=COIL",
                   help="a discrete input that reads a coil (repeatable)")
    a = p.parse_args(argv)
    mirror = dict(item.split("=", 1) for item in a.mirror)
    asyncio.run(serve(profile_named(a.profile), a.port, [int(u) for u in a.units.split(",")], mirror))
    return 0


if __name__ == "__main__":
    sys.exit(main())
