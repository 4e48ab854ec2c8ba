"""``streetedge bench update``: time to update one node and a whole line of nodes, against the line rate.

For each bit rate (19200 and 115200 by default), on a paced virtual bus (one
character every 11/baud s, as on a real line) with the real lamp firmware:

- one node: :func:`gateway.update.deliver.deliver`, the image sent to that
  node alone (each chunk written and echoed back);
- a line of ``nodes`` nodes (32 by default):
  :func:`gateway.update.deliver.deliver_bus`, the image broadcast once to
  every node, then each node committed and confirmed on its own.

The image is the lamp's ROMFS image with a marker file (the same code, other
bytes), signed for the bench's key; each node's health time is 2 s. Reported:
the transfer (first BEGIN until the last chunk is taken), the whole update
(until every node confirmed its new image), and the line-rate limit for the
image's bytes alone (bytes x 11 bits / baud): what no transfer can beat. Each
node that did not confirm is listed under the table with the delivery's reason.

The line also carries ``BYSTANDERS`` nodes that are not updated, polled by the
gateway's own poller (once a second, :mod:`tools.bench.update_polls`)
for ``BASELINE_S`` seconds before the update and all through it: their poll
delay and interval, before and during, show what the update costs the polls.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from gateway.service.config import BusConfig
from gateway.transport.modbus_rtu import ModbusBus
from gateway.update.deliver import UpdateError, deliver, deliver_bus
from gateway.update.package import UpdatePackage, make_package
from tools.bench import record
from tools.bench.update_polls import PollWatch
from tools.romfs import build_romfs
from tools.sim.bus import BITS_PER_CHAR
from tools.sim.power_up import PowerUp
from tools.sim.street import VirtualStreet

KEY = b"streetedge bench key"
HEALTH_S = 2
BYSTANDERS = 3
"""Nodes on the line that are not updated, only polled."""
POLL_INTERVAL = 1.0
BASELINE_S = 10.0
"""Seconds the bystanders are polled before the update starts."""


def _package(street: VirtualStreet, work: Path) -> UpdatePackage:
    folder = work / "image-new"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(street.image, folder)
    (folder / "version.txt").write_text("bench")
    return make_package(build_romfs(folder), key=KEY, role="lamp", board="sim", health_s=HEALTH_S)


def measure(baud: int, nodes: int, work: Path, bystanders: int = BYSTANDERS) -> dict[str, Any]:
    """Update ``nodes`` lamps (one: unicast; more: broadcast) on a paced line at ``baud``, polling
    ``bystanders`` more; the figures."""
    street = VirtualStreet(work / f"street-{baud}-{nodes}", nodes=nodes + bystanders, baud=baud, paced=True)
    updated = list(range(1, nodes + 1))
    for unit in updated:  # the bystanders hold no key: they could take no update
        flash = street.nodes[unit].flash
        flash.mkdir(parents=True, exist_ok=True)
        (flash / "node.key").write_bytes(KEY)
    with street:
        street.start(timeout=300)
        package = _package(street, work)
        sent_at: list[float] = []

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "sending" and done >= total and not sent_at:
                sent_at.append(time.monotonic())

        async def run() -> tuple[dict[int, dict[str, Any] | UpdateError], float, PollWatch]:
            # 8N2: 11-bit characters, as the paced line counts them (a pty takes no parity).
            bus = ModbusBus(BusConfig(name="bus0", device=street.master_device, baud=baud, parity="N",
                                      stopbits=2, timeout=1.0, retries=1))
            watch = PollWatch(bus, list(range(nodes + 1, nodes + bystanders + 1)), POLL_INTERVAL)
            stop = asyncio.Event()
            polling = asyncio.create_task(watch.run(stop))
            try:
                await asyncio.sleep(BASELINE_S if bystanders else 0.0)
                watch.start_update()
                start = time.monotonic()
                results: dict[int, dict[str, Any] | UpdateError]
                if nodes == 1:
                    try:
                        results = {1: await deliver(bus, 1, package, progress=progress)}
                    except UpdateError as exc:
                        results = {1: exc}
                else:
                    results = await deliver_bus(bus, updated, package, progress=progress)
                return results, start, watch
            finally:
                stop.set()
                await polling
                bus.close()

        with PowerUp(street):
            results, start, watch = asyncio.run(run())
            done = time.monotonic()
    failed = {unit: str(r) for unit, r in results.items() if isinstance(r, UpdateError)}
    for unit, reason in failed.items():  # say why, so that a failed node can be looked into
        print(f"{baud} bit/s, unit {unit} of {nodes}: {reason}", flush=True)
    limit = len(package.image) * BITS_PER_CHAR / baud
    transfer = (sent_at[0] if sent_at else done) - start
    return {"baud": baud, "nodes": nodes, "confirmed": nodes - len(failed), "failed": failed,
            "image": len(package.image),
            "transfer_s": transfer, "total_s": done - start, "limit_s": limit, "ratio": transfer / limit,
            "bystanders": bystanders, "polls": {k: v.summary(POLL_INTERVAL) for k, v in watch.phases.items()}}


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the runs."""
    lines = [
        f"Paced virtual bus (11 bits a character), real lamp firmware, {time.strftime('%Y-%m-%d')}, 2 shared "
        f"cores, load average {os.getloadavg()[0]:.1f} at the end; image = the lamp's ROMFS image, health time "
        f"{HEALTH_S} s.",
        "",
        "| bit/s | nodes | how | image (bytes) | line-rate limit (s) | transfer (s) | transfer / limit "
        "| until all confirmed (s) | confirmed |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        how = "unicast, each chunk echoed" if r["nodes"] == 1 else "broadcast chunks, then each node"
        lines.append(f"| {r['baud']} | {r['nodes']} | {how} | {r['image']} | {r['limit_s']:.1f} "
                     f"| {r['transfer_s']:.1f} | {r['ratio']:.2f}x | {r['total_s']:.1f} "
                     f"| {r['confirmed']} of {r['nodes']} |")
    failures = [f"- {r['baud']} bit/s, {r['nodes']} node(s): {reason}" for r in rows for reason in r["failed"].values()]
    if failures:
        lines += ["", "Not confirmed (the delivery's reason):", "", *failures]
    lines += [
        "",
        f"Polls of the line's {rows[0]['bystanders'] if rows else BYSTANDERS} other nodes (not updated), by the "
        f"gateway's poller (its poll plans and priority), each due every {POLL_INTERVAL:.0f} s; interval = between "
        f"two good polls of a node, delay = interval - {POLL_INTERVAL:.0f} s; {BASELINE_S:.0f} s before the update "
        "and all through it:",
        "",
        "| bit/s | nodes updated | phase | polls | failed | delay p50 (ms) | delay p95 (ms) | delay max (ms) "
        "| interval p50 (s) | interval p95 (s) | interval max (s) |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        for phase, p in r["polls"].items():
            lines.append(f"| {r['baud']} | {r['nodes']} | {phase} | {p['polls']:.0f} | {p['failed']:.0f} "
                         f"| {p['delay_p50'] * 1000:.0f} | {p['delay_p95'] * 1000:.0f} | {p['delay_max'] * 1000:.0f} "
                         f"| {p['interval_p50']:.2f} | {p['interval_p95']:.2f} | {p['interval_max']:.2f} |")
    return "\n".join(lines)


def run_update_bench(bauds: list[int], nodes: int = 32, write_docs: bool = False) -> int:
    """Measure one node and a line of ``nodes`` at each rate; print (and record) the table; 1 if one failed."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        for baud in bauds:
            for count in (1, nodes):
                row = measure(baud, count, Path(tmp))
                print(row, flush=True)
                rows.append(row)
    text = table(rows)
    print(text)
    if write_docs:
        command = f"streetedge bench update --bauds {','.join(map(str, bauds))} --nodes {nodes} --write-docs"
        record("bench update", "Updates over the bus", command, text)
    return 0 if all(r["confirmed"] == r["nodes"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(run_update_bench([19200, 115200], nodes=int(sys.argv[1]) if len(sys.argv) > 1 else 32))
