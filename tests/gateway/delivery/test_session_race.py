"""Live polls a slow broker pushed into the backlog go out in the same session, however the disk orders the work.

The defect this guards against: the composer's backlog take could reach the outbox thread between the writer's
delete of acknowledged records and its release of the polls moved to the backlog; the take came back empty, the
session concluded it had no backlog left, and those polls waited in the outbox for the next session (for as long
as the connection stayed up). The driver now takes only while the writer is idle. The interleaving depends on
the threads' timing: without that fix this test failed in 2 of 8 runs on a loaded host (hence ``slow``: it is a
soak of the ordering, not a cheap unit).

Real parts: the Delivery driver and its SQLite outbox (in its thread); the broker is this test, which holds its
acknowledgements back and then gives them all.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.contracts import load_role
from gateway.delivery.driver import Delivery
from gateway.mqtt.publish_queue import Outgoing
from gateway.mqtt.topics import Topics
from gateway.service.config import parse_config
from gateway.service.stats import GatewayStats

POLLS = 200
"""More than the data window (48 messages) and the live lane (20 polls) hold: the rest spills into the backlog."""


@pytest.mark.slow
def test_live_polls_pushed_into_the_backlog_are_replayed_in_the_same_session(tmp_path: Path) -> None:
    config = parse_config(f"""
site = "city"
gateway = "gw"
[delivery]
outbox = "{tmp_path / 'outbox.db'}"
profile = "compact"
batch_interval = 0
batch_max = 1
synchronous = "NORMAL"
[[bus]]
name = "lamps"
type = "tcp"
host = "127.0.0.1"
port = 1502
[[node]]
id = "lamp-1"
bus = "lamps"
unit = 1
""", source="race.toml")
    node = config.node[0]
    registers = load_role("lamp").registers
    stats = GatewayStats()

    async def main() -> None:
        delivery = Delivery(config, Topics("city", "gw"), stats)
        await delivery.open()
        writer = asyncio.create_task(delivery.run())
        sent: list[Outgoing] = []
        try:
            await delivery.births(1)
            delivery.session_open(1, sent.append)
            for seq in range(1, POLLS + 1):  # the broker acknowledges nothing meanwhile: the live lane spills over
                delivery.record(node, time.time(), [(reg, seq if reg.name == "seq" else 0) for reg in registers])
                await asyncio.sleep(0)
            acked = 0
            deadline = time.monotonic() + 60
            while not (stats.outbox_stored == POLLS and stats.outbox_depth == 0 and not delivery.waiting):
                assert time.monotonic() < deadline, (
                    f"{stats.outbox_depth} records left in the outbox with the session open, {acked} messages acked")
                for msg in sent[acked:]:  # the broker catches up: everything sent is acknowledged
                    if msg.entries:
                        delivery.acked(msg)
                acked = len(sent)
                await asyncio.sleep(0.01)
        finally:
            delivery.session_closed()
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            await delivery.close()

    asyncio.run(main())
