"""The delivery counters (<root>/delivery): a stopping gateway reports its latest drops at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import cbor2

from gateway.delivery.driver import Delivery
from gateway.delivery.messages import known_roles
from gateway.mqtt.topics import Topics
from gateway.mqtt.uplink import Outgoing
from gateway.service.config import parse_config
from gateway.service.stats import GatewayStats


def test_flush_reports_drops_made_within_the_pause_between_reports(tmp_path: Path) -> None:
    """Drops after the last report go out with the flush, not 5 s later (the gateway would be gone by then)."""
    config = parse_config(
        f'site = "s"\ngateway = "g"\n[delivery]\noutbox = "{tmp_path / "outbox.db"}"\nbudget_mb = {2 / 1024}\n'
        '[[bus]]\nname = "b"\ndevice = "/dev/null"\n[[node]]\nid = "lamp-1"\nbus = "b"\nunit = 1\n'
    )
    node = config.node[0]
    registers = known_roles()["lamp"].registers
    topics = Topics("s", "g")
    stats = GatewayStats()

    def poll(seq: int) -> list[tuple[object, int]]:
        return [(reg, seq if reg.name == "seq" else 1) for reg in registers]

    def dropped(msg: Outgoing) -> int:
        body = cbor2.loads(msg.payload)
        return int(body["dropped"]["readings"])

    async def main() -> tuple[int, int, list[Outgoing]]:
        delivery = Delivery(config, topics, stats)
        await delivery.open()
        sent: list[Outgoing] = []
        try:
            for seq in range(40):  # no session: the 2 KiB budget pushes the oldest out
                delivery.record(node, time.time(), poll(seq))  # type: ignore[arg-type]
            await delivery.settle()
            session = await delivery.new_session()
            births = await delivery.births(session)
            reported = dropped(next(m for m in births if m.topic == topics.delivery))
            delivery.session_open(session, sent.append)
            for seq in range(40, 80):  # held for the live lane: they push the rest of the backlog out
                delivery.record(node, time.time(), poll(seq))  # type: ignore[arg-type]
            await delivery.settle()
            delivery.flush()
        finally:
            delivery.session_closed()
            await delivery.close()
        return reported, stats.outbox_dropped, sent

    reported, total, sent = asyncio.run(main())
    assert 0 < reported < total, "drops both before the session and during it"
    statuses = [m for m in sent if m.topic == topics.delivery]
    assert statuses and dropped(statuses[-1]) == total
