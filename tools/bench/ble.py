"""``streetedge bench ble``: adverts the gateway decodes and stores per second, against a floor; a crowded radio.

Two parts, in one run:

1. Decode and store. ``--adverts`` distinct sealed meter adverts (from
   ``--nodes`` nodes) go through the gateway's own path: the bleak detection
   callback (:class:`~gateway.transport.ble_scan.BleListener`), the receiver
   (AES-CCM, replay window committed to SQLite, de-duplication, role tables),
   and the durable outbox (:class:`~gateway.delivery.driver.Delivery`, until
   every reading is on disk). The floor does the least the same work needs:
   ``cryptography``'s AESCCM decrypt and one SQLite row per advert, in
   100-row transactions. Both on the same machine, one after the other.
2. The virtual radio: ``--radio-nodes`` Bumble nodes advertising a new
   reading every ``--interval`` seconds, ``--loss`` of the adverts lost,
   scanned by bleak on the Bumble backend into a receiver for ``--seconds``:
   readings received against those sent, beyond the injected loss.

Prints one JSON line (and a table); ``--write-docs`` records it in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bleak.backends.device import BLEDevice
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from gateway.mqtt.topics import Topics
from gateway.service.config import parse_config
from gateway.service.stats import GatewayStats, NodeStats
from gateway.transport.ble_receiver import AdvertReceiver
from gateway.transport.ble_scan import BleListener
from gateway.transport.ble_window import ReplayWindows
from protocols import ble_adverts, bthome, bthome_read
from tools.sim.ble_beacons import Beacon
from tools.sim.bleak_bumble import advertisement_data, scanner_backend
from tools.sim.radio import VirtualRadio

DOCS = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
BEGIN, END = "<!-- bench ble: begin -->", "<!-- bench ble: end -->"


def _address(i: int) -> str:
    return f"D0:5E:00:00:{i >> 8:02X}:{i & 0xFF:02X}"


def _key(i: int) -> bytes:
    return i.to_bytes(2, "big") * 8


def _config(nodes: int, folder: Path, interval: float) -> str:
    lines = ['site = "bench"', 'gateway = "gw"', "[delivery]", f'outbox = "{folder / "outbox.db"}"', "[ble]",
             f'counters = "{folder / "ble.sqlite"}"', "silent_intervals = 1000"]
    for i in range(nodes):
        lines += ["[[ble.node]]", f'id = "n{i}"', f'address = "{_address(i)}"', f'key = "{_key(i).hex()}"',
                  f"interval = {interval}"]
    return "\n".join(lines) + "\n"


def _adverts(nodes: int, count: int) -> list[tuple[int, bytes]]:
    rows, in_reading, _ = ble_adverts.role("meter")
    buf = bytearray(ble_adverts.MAX_OBJECTS)
    sealers = [bthome.Sealer(_key(i), _address(i)) for i in range(nodes)]
    out = []
    for k in range(count):
        i = k % nodes
        n = ble_adverts.pack_reading(buf, rows, in_reading, [3300, k], 0)
        out.append((i, bytes(sealers[i].seal(bytes(buf[:n]), k // nodes + 1))))
    return out


def floor_rate(nodes: int, adverts: list[tuple[int, bytes]], folder: Path) -> float:
    """Adverts per second: AESCCM decrypt + one SQLite row each, 100 rows per transaction."""
    ciphers = [AESCCM(_key(i), tag_length=4) for i in range(nodes)]
    db = sqlite3.connect(folder / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE r (node INTEGER, seq INTEGER, payload BLOB)")
    start = time.perf_counter()
    batch: list[tuple[int, int, bytes]] = []
    for i, data in adverts:
        info, counter = bthome_read.check_header(data)
        plain = ciphers[i].decrypt(bthome_read.nonce(_address(i), info, counter), data[1:-8] + data[-4:], None)
        batch.append((i, counter, plain))
        if len(batch) == 100:
            db.executemany("INSERT INTO r VALUES (?, ?, ?)", batch)
            batch.clear()
    db.executemany("INSERT INTO r VALUES (?, ?, ?)", batch)
    elapsed = time.perf_counter() - start
    db.close()
    return len(adverts) / elapsed


async def gateway_rate(nodes: int, adverts: list[tuple[int, bytes]], folder: Path) -> tuple[float, int]:
    """Adverts per second through the gateway's callback, receiver and outbox; and the readings stored."""
    from gateway.delivery.driver import Delivery

    config = parse_config(_config(nodes, folder, 1.0))
    stats = GatewayStats()
    delivery = Delivery(config, Topics(config.site, config.gateway), stats)
    await delivery.open()
    runner = asyncio.create_task(delivery.run())
    receiver = AdvertReceiver(config.ble, ReplayWindows(folder / "ble.sqlite"), stats.nodes, delivery.record)
    listener = BleListener(receiver)
    devices = [BLEDevice(_address(i), None, None) for i in range(nodes)]
    start = time.perf_counter()
    for i, data in adverts:
        listener.on_advert(devices[i], advertisement_data([(0x16, b"\xd2\xfc" + data)], -60))
    await delivery.settle()
    elapsed = time.perf_counter() - start
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)
    stored = stats.outbox_stored
    await delivery.close()
    receiver.windows.close()
    assert receiver.counts["accepted"] == len(adverts), dict(receiver.counts)
    return len(adverts) / elapsed, stored


async def crowded_radio(nodes: int, interval: float, loss: float, seconds: float, folder: Path) -> dict[str, Any]:
    """Readings the gateway got from ``nodes`` Bumble nodes on a lossy radio against those they sent."""
    from bleak import BleakScanner

    radio = VirtualRadio(loss=loss, seed=1)
    config = parse_config(_config(nodes, folder, interval))
    stats: dict[str, NodeStats] = {}
    got: list[str] = []
    receiver = AdvertReceiver(config.ble, ReplayWindows(folder / "radio.sqlite"), stats,
                              lambda node, _when, _readings: got.append(node.id))
    # Each reading is on the air for one interval, advertised three times in it (a real node's radio
    # repeats its advert several times per reading): a reading is lost only if all three PDUs are.
    beacons = [Beacon(radio, _address(i), _key(i), interval_ms=interval * 1000 / 3) for i in range(nodes)]
    for beacon in beacons:
        await beacon.start()
    listener = BleListener(receiver)
    sent = 0
    async with BleakScanner(listener.on_advert, backend=scanner_backend(radio)):
        start = time.monotonic()
        rounds = 0
        while time.monotonic() - start < seconds:
            rounds += 1
            due = start + rounds * interval
            await asyncio.gather(*(beacon.reading([3300, rounds]) for beacon in beacons))
            sent += nodes
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        elapsed = time.monotonic() - start
        await asyncio.sleep(interval)  # the last round's adverts are on the air for one interval
    receiver.windows.close()
    return {"nodes": nodes, "sent": sent, "received": len(got), "lost_pdus": radio.link.counts["lost"],
            "delivered_pdus": radio.link.counts["adverts"], "refused": sum(receiver.refused.values()),
            "interval_achieved_s": round(elapsed / rounds, 3)}


def run_ble_bench(*, nodes: int = 50, adverts: int = 20000, radio_nodes: int = 200, interval: float = 1.0,
                  loss: float = 0.1, seconds: float = 20.0, write_docs: bool = False) -> int:
    """Run both parts; print the figures; 0 unless the radio lost readings beyond the injected rate."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sealed = _adverts(nodes, adverts)
        floor = floor_rate(nodes, sealed, folder)
        ours, stored = asyncio.run(gateway_rate(nodes, sealed, folder))
        radio = asyncio.run(crowded_radio(radio_nodes, interval, loss, seconds, folder))
    # A reading is lost only if every advertising event of its interval was: loss ** events.
    result = {"adverts": adverts, "floor_per_s": round(floor), "gateway_per_s": round(ours),
              "ratio": round(floor / ours, 2), "stored": stored, **{f"radio_{k}": v for k, v in radio.items()}}
    received_share = radio["received"] / radio["sent"] if radio["sent"] else 0.0
    result["radio_received_share"] = round(received_share, 4)
    print(json.dumps(result))
    print(f"decode+store: gateway {ours:,.0f} adverts/s, floor {floor:,.0f}/s ({floor / ours:.1f}x); "
          f"radio: {radio['received']} of {radio['sent']} readings from {radio_nodes} nodes "
          f"with {loss:.0%} of advert PDUs lost")
    if write_docs:
        _write_docs(result, nodes=nodes, interval=interval, loss=loss, seconds=seconds)
    return 0 if received_share >= 1 - loss else 1


def _write_docs(result: dict[str, Any], **run: Any) -> None:
    text = DOCS.read_text()
    block = (f"{BEGIN}\n`streetedge bench ble --write-docs` ({time.strftime('%Y-%m-%d')}; {run}):\n\n```json\n"
             f"{json.dumps(result, indent=1)}\n```\n{END}")
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## BLE adverts\n\n" + block + "\n"
    DOCS.write_text(text)
