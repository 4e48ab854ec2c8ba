"""Node event logs: the window read as the node contract says, catch-up after a restart, events published once.

The node is a pymodbus lamp with an event ring that follows protocols/roles/common.py: ``event_from``
(holding) selects the first seq, the window (input from EVENT_WINDOW_START) shows up to EVENT_WINDOW
events, ``event_next``/``event_oldest``/``event_count`` say what is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.polling.event_catchup import CLOCK_MIN, WINDOW, WINDOW_MAP, Event, event_names, parse_window
from gateway.service.daemon import Gateway
from protocols import senml
from protocols.roles import common

LAMP = load_role("lamp")


def make_event_lamp(base: type) -> type:
    """A SimLamp (from the conftest) subclass with an event ring, following the node contract."""

    class EventLamp(base):  # type: ignore[misc, valid-type]
        def __init__(self, unit: int, events: list[tuple[int, int, int]], **values: Any) -> None:
            super().__init__(unit, **values)
            self.ring: list[tuple[int, int, int, int]] = []  # seq, time, code, value
            self.next_seq = 0
            self.window_reads = 0
            for event in events:
                self.add(*event)

        def add(self, time_: int, code: int, value: int) -> None:
            self.ring.append((self.next_seq, time_, code, value))
            self.next_seq += 1

        def input_words(self) -> list[int]:
            words: list[int] = super().input_words()
            size = common.EVENT_WINDOW_START + WINDOW * common.EVENT_WORDS
            words += [0] * (size - len(words))
            reg = LAMP["event_from"]
            start = reg.from_words(self.holding, reg.address)
            shown = [e for e in self.ring if e[0] >= start][:WINDOW]
            for name, value in (("event_next", self.next_seq), ("event_count", len(shown)),
                                ("event_oldest", self.ring[0][0] if self.ring else self.next_seq)):
                r = LAMP[name]
                words[r.address : r.address + r.width] = r.words(value)
            for i, event in enumerate(shown):
                for field, value in zip(("seq", "time", "code", "value"), event, strict=True):
                    r = WINDOW_MAP[f"ev{i}_{field}"]
                    words[r.address : r.address + r.width] = r.words(value)
            self.window_reads += 1
            return words

    return EventLamp


def test_the_window_map_follows_the_node_contract() -> None:
    """One block from event_count to the end of the window; each slot at its documented words."""
    ((start, count),) = WINDOW_MAP.blocks(INPUT)
    assert start == LAMP["event_count"].address
    assert start + count == common.EVENT_WINDOW_START + common.EVENT_WINDOW * common.EVENT_WORDS
    assert WINDOW_MAP["ev1_seq"].address == common.EVENT_WINDOW_START + common.EVENT_WORDS
    assert WINDOW_MAP["ev0_value"].type == 3  # s32


def test_parse_window_reads_count_events_only() -> None:
    words = [0] * 58
    words[0] = 2
    for i, (seq, t, code, value) in enumerate([(5, CLOCK_MIN + 10, 1, 0), (6, 30, 33, -40)]):
        base = 2 + i * common.EVENT_WORDS
        words[base : base + 7] = [seq >> 16, seq & 0xFFFF, t >> 16, t & 0xFFFF, code, (value >> 16) & 0xFFFF,
                                  value & 0xFFFF]
    assert parse_window(WINDOW_MAP.decode(INPUT, 118, words)) == [(5, CLOCK_MIN + 10, 1, 0), (6, 30, 33, -40)]


def test_event_names_come_from_the_common_and_the_role_tables() -> None:
    names = event_names("lamp")
    assert names[common.EV_BOOT] == "boot"
    assert names[33] == "level"  # protocols.roles.lamp.EV_LEVEL


@contextlib.asynccontextmanager
async def running(gateway: Gateway) -> AsyncIterator[None]:
    task = asyncio.create_task(gateway.run())
    try:
        yield
    finally:
        gateway.stop()
        async with asyncio.timeout(30):
            await task


def events_in(messages: list[Any]) -> list[dict[str, Any]]:
    """The events of event messages, by seq: per event its resolved name, seq, value and time.

    Resolved records come in time order (RFC 8428 section 4.6), and an event whose time was estimated from
    the node's uptime may be older than the events logged after it.
    """
    out = []
    for msg in messages:
        records = senml.resolve(senml.from_labels(cbor2.loads(msg.payload)))
        starts = [i for i, r in enumerate(records) if r["n"].endswith(":event")] + [len(records)]
        for i, j in itertools.pairwise(starts):
            by = {r["n"].rsplit(":", 1)[1]: r for r in records[i:j]}
            out.append({"name": by["event"]["vs"], "seq": by["event_seq"]["v"], "value": by["event_value"]["v"],
                        "t": by["event"]["t"], "estimated": "event_time_estimated" in by})
    return sorted(out, key=lambda e: e["seq"])


def test_every_event_is_published_once_across_a_restart(mosquitto, pty_pair, sim, subscriber, tmp_path: Path) -> None:
    """13 events (two windows) go out; after a restart only the new ones, read from the stored cursor."""
    gw_end, node_end = pty_pair
    lamp_cls = make_event_lamp(sim.lamp)
    now = int(time.time())
    lamp = lamp_cls(1, [(now - 100 + i, common.EV_ALARM_ON, i) for i in range(12)] + [(60, 33, 40)], uptime=3600)
    config = sim.config(gw_end, mosquitto.url, extra=f'[delivery]\noutbox = "{tmp_path / "outbox.db"}"\n')
    sub = subscriber(mosquitto.host, mosquitto.port, "streetedge/v1/test-site/gw-1/event/#")
    received: list[Any] = []

    async def run_once(expect: int) -> None:
        gateway = Gateway(config)
        async with sim.serve(node_end, [lamp]), running(gateway):
            while len(events_in(received)) < expect:
                received.append(await sub.wait(lambda m: True, within=30))
            await asyncio.sleep(1.0)  # a second copy would arrive now
            assert gateway.events is not None and gateway.events.cursors["lamp-1"] == lamp.next_seq - 1

    asyncio.run(run_once(13))
    first = events_in(received)
    assert [e["seq"] for e in first] == list(range(13))
    assert first[0]["name"] == "alarm_on" and first[12]["name"] == "level"
    assert first[12]["estimated"] and not first[0]["estimated"]
    assert abs(first[12]["t"] - (time.time() - (lamp.values["uptime"] - 60))) < 60  # from uptime

    lamp.add(now, common.EV_CLOCK_SET, 5)
    lamp.add(now + 1, 34, 7)
    received.clear()
    asyncio.run(run_once(2))
    again = events_in(received)
    assert [e["seq"] for e in again] == [13, 14], "old events were published again"
    assert [e["name"] for e in again] == ["clock_set", "programs"]


def test_an_event_payload_round_trips() -> None:
    event = Event(7, 1_798_761_600.0, common.EV_BOOT, 2, estimated=True)
    assert Event.from_payload(7, event.payload()) == event
    assert HOLDING != INPUT
