"""``python -m tools.bench.update_ble``: time to update one BLE meter over GATT on the virtual radio.

The real meter firmware (MicroPython unix port, heap 128K plus its image, code in its ROM partition)
on the virtual radio; the gateway's GATT client on the Bumble backend delivers the meter's ROMFS
image with a marker file (the same code, other bytes), signed for the bench's key, through
:func:`gateway.update.ble_deliver.deliver_ble` with its default throttle (48 commands per
connection, 0.2 s between connections). Reported: the transfer (first status read until the last
chunk is taken), the whole update (until the node confirmed its new image; its health time is 2 s),
the commands and connections it took, and the node's heap peak. The virtual radio has no air time:
the figures are the firmware's and the gateway's costs, not a radio's.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_session import GattSession
from gateway.transport.ble_window import ReplayWindows
from gateway.update.ble_deliver import GattFileRecords
from gateway.update.deliver import deliver
from gateway.update.package import make_package
from tools.romfs import build_romfs
from tools.sim.bleak_bumble import client_backend
from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

KEY = b"streetedge bench key"
BLE_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
NODE = BleNodeConfig(id="pit-51", address="D0:5E:00:00:00:51", key=BLE_KEY, role="meter", interval=0.3)


async def _powered(street: VirtualStreet, stop: asyncio.Event) -> None:
    # a chip boots again by itself after its reset: the bench starts the node again
    while not stop.is_set():
        if not street.node(1).alive():
            await asyncio.to_thread(street.start_node, 1, wait=False)
        await asyncio.sleep(0.05)


def measure(work: Path) -> dict[str, Any]:
    """One update of a BLE meter over GATT; its figures."""
    radio = VirtualRadio()
    host = RadioHost(radio)
    street = VirtualStreet(work / "street", nodes=1, role="meter", heapsize="128K")
    flash = street.node(1).flash
    flash.mkdir(parents=True)
    (flash / "config.json").write_text(json.dumps({"unit": 1, "role": "meter", "baud": 19200, "sample_ms": 100}))
    (flash / "control.json").write_text(json.dumps({"water": {"mode": "off"}}))
    (flash / "node.key").write_bytes(KEY)
    (flash / "ble.json").write_text(json.dumps({"key": BLE_KEY, "interval_ms": 300, "burst_ms": 100}))
    row: dict[str, Any] = {}

    async def main() -> None:
        port = await host.start()
        street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": NODE.address, "diag_ms": 300}
        stop = asyncio.Event()
        windows = ReplayWindows(work / "ble.sqlite")
        try:
            await asyncio.to_thread(street.start)
            folder = work / "image-b"
            shutil.copytree(street.image, folder)
            (folder / "version.txt").write_text("b")
            package = make_package(build_romfs(folder), key=KEY, role="meter", board="sim", health_s=2)
            powered = asyncio.create_task(_powered(street, stop))
            sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=5)
            marks: dict[str, float] = {}

            def progress(phase: str, done: int, total: int) -> None:
                marks.setdefault("first", time.monotonic())
                if phase == "switching":
                    marks["sent"] = time.monotonic()

            async with GattSession(sender, NODE) as session:
                records = GattFileRecords(session)
                start = time.monotonic()
                await deliver(records, 0, package, progress=progress, back_within=90)
                row.update(bytes=len(package.image), transfer_s=round(marks["sent"] - start, 1),
                           update_s=round(time.monotonic() - start, 1), commands=records.commands,
                           connections=session.connections)
            stop.set()
            await powered
            row["heap_peak"] = json.loads((flash / "diag.json").read_text())["heap_peak"]
        finally:
            stop.set()
            await asyncio.to_thread(street.stop)
            await host.stop()
            windows.close()

    asyncio.run(main())
    return row


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="bench-update-ble-") as tmp:
        result = measure(Path(tmp))
    print(json.dumps(result))
    sys.exit(0)
