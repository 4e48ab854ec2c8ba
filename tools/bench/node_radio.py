"""``streetedge bench node`` for a battery BLE node: no bus, every feature exercised over the radio.

A ``meter-ble`` or ``env-ble`` node of the bench is the meter or environment
firmware as a battery node has it: ``config.json`` says ``"bus": false``, so it
runs no Modbus slave (its code is never loaded) and is reached over its radio
only. Instead of the Modbus master of :func:`tools.bench.node.measure_role`, a
gateway's GATT sender (the gateway's own ``GattSender`` over the bleak backend on
the virtual radio) writes the role's setup and its feature writes every
``WRITE_EVERY`` seconds (the same writes as over the bus, as GATT ``OP_WRITE``),
and reads the role's holding registers back to back (GATT ``OP_READ``), each a
connection of its own; the node advertises its readings every second (its
``ble.json``) and its sensors and meter run as on a wired node. The figures
have the keys of :func:`~tools.bench.node.measure_role`'s: ``requests`` and the
round trips are the GATT reads (connection, write, notified result), the
Modbus turnaround figures are absent, ``adverts`` counts the node's adverts.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.contracts import BLE_GATT_OP_READ, BLE_GATT_OP_WRITE, ble_gatt_write_body
from protocols.roles import load
from tools.sim.radio_street import RadioThread
from tools.sim.street import VirtualStreet

if TYPE_CHECKING:
    from collections.abc import Callable

    from gateway.service.config_ble import BleNodeConfig
    from gateway.transport.ble_client import GattSender

_READ_COUNT = 10  # holding registers per GATT read (from address 0)


class _Exercise:
    """The GATT side of one run: setup, feature writes on a period, reads back to back in between."""

    def __init__(self, setup: list[tuple[int, list[int]]], writes_for: Callable[[int], list[tuple[int, list[int]]]],
                 warmup: float, seconds: float, write_every: float) -> None:
        self.setup = setup
        self.writes_for = writes_for
        self.warmup = warmup
        self.seconds = seconds
        self.write_every = write_every
        self.rtts: list[float] = []
        self.errors = 0
        self.writes = 0
        self.refused = 0

    async def _write(self, sender: GattSender, node: BleNodeConfig, batch: list[tuple[int, list[int]]]) -> None:
        from gateway.transport.ble_client import GattError

        for address, words in batch:
            self.writes += 1
            try:
                status, _ = await sender.send(node, BLE_GATT_OP_WRITE,
                                              ble_gatt_write_body(address, [w & 0xFFFF for w in words]))
                self.refused += int(status != 0)
            except GattError:
                self.refused += 1

    async def run(self, sender: GattSender, nodes: list[BleNodeConfig]) -> None:
        """Drive the one node of ``nodes`` for warm-up plus ``seconds``."""
        from gateway.transport.ble_client import GattError

        node = nodes[0]
        await self._write(sender, node, self.setup)
        loop = asyncio.get_running_loop()
        start = loop.time()
        next_write = start + self.warmup
        i = 0
        while loop.time() - start < self.warmup + self.seconds:
            if loop.time() >= next_write:
                await self._write(sender, node, self.writes_for(i))
                i += 1
                next_write += self.write_every
            t = time.perf_counter()
            try:
                status, _ = await sender.send(node, BLE_GATT_OP_READ, bytes((0, 0, _READ_COUNT)))
                ok = status == 0
            except GattError:
                ok = False
            took = time.perf_counter() - t
            if loop.time() - start < self.warmup:
                continue
            if ok:
                self.rtts.append(took)
            else:
                self.errors += 1


def measure_radio_role(role: str, seconds: float, work: Path, heapsize: str) -> dict[str, Any]:
    """One battery BLE node of ``role`` (``meter-ble``, ``env-ble``) driven over the radio; the figures.

    Raises StreetError if the node does not boot at ``heapsize``.
    """
    from tools.bench import node as bench

    base = role.removesuffix("-ble")
    street = VirtualStreet(work / f"street-{role}-{heapsize}", nodes=1, role=base, heapsize=heapsize)
    node = street.node(1)
    node.flash.mkdir(parents=True, exist_ok=True)
    (node.flash / "control.json").write_text(json.dumps(bench.control(base)))
    (node.flash / "config.json").write_text(json.dumps({"unit": 1, "role": base, "bus": False}))
    rmap = load(base)
    exercise = _Exercise(bench.setup_writes(base, rmap), lambda i: bench.feature_writes(base, rmap, i),
                         bench.WARMUP, seconds, bench.WRITE_EVERY)
    radio = RadioThread(street, {1: base}, gatt_every=None)
    with radio, street:
        street.start()
        radio.call(exercise.run)
        d = bench.wait_diag(node.flash, bench.WARMUP + seconds)
        alive = node.alive()
    rtts = sorted(exercise.rtts)
    ble = d.get("ble") or {}
    return {
        "gatt_answered": len(rtts), "gatt_failed": exercise.errors, "ble": ble,
        "radio_heap": bench.radio_heap(node.flash),
        "role": role,
        "bus": False,
        "heapsize": heapsize,
        "alive": alive,
        "heap_peak": d.get("heap_peak"),
        "heap_live": d.get("heap_live"),
        "heap_gc_peak": d.get("heap_gc_peak"),
        "rom_heap": d.get("rom_heap"),
        "short_of_ram": d.get("evaluations_short_of_ram"),
        "turnaround_us": None,
        "turnaround_max_us": None,
        "read_max_us": None,
        "late_reads": None,
        "answered": d.get("answered"),
        "modbus_requests": d.get("requests"),
        "adverts": ble.get("adverts"),
        "requests": len(rtts),
        "errors": exercise.errors,
        "writes": exercise.writes,
        "refused": exercise.refused,
        "rtt_p50_ms": 1000 * statistics.median(rtts) if rtts else None,
        "rtt_p99_ms": 1000 * rtts[int(0.99 * (len(rtts) - 1))] if rtts else None,
        "rtt_max_ms": 1000 * rtts[-1] if rtts else None,
        "registers": _READ_COUNT,
    }
