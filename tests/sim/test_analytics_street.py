"""End to end: a leak and a degrading driver on the virtual street reach the broker as analytics flags.

The real firmware on the virtual street (a lamp and a water meter), the real
gateway polling them, Mosquitto, and paho as an independent subscriber that
decodes the event packs with cbor2 and the RFC 8428 labels alone. The
street's virtual clock (``control.json`` ``epoch``/``speed``) runs an hour a
second and the gateway's clock follows it, so the nights pass in seconds.

The lamp's power is physics in real time and needs no speed-up. The meter's
water runs in real time, and the node counts it in bursts of a second or so:
for the night-flow window the clock slows to five minutes a second, and the
leak is sized for real time (18,000 l/h of real time; the wheel turns several
times in each half hour of street time).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import queue
import time
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as paho
import pytest

from gateway.service.config import parse_config
from gateway.service.daemon import Gateway
from protocols.roles import load
from tools.broker import LocalBroker
from tools.sim.street import VirtualStreet
from tools.street_config import gateway_toml

FAST, SLOW = 3600.0, 300.0
DAY = 86400.0
START = datetime.datetime(2026, 3, 2, 4, 0, tzinfo=datetime.UTC).timestamp()  # dark until 05:30 in the model
LABELS = {-2: "bn", -3: "bt", 0: "n", 1: "u", 2: "v", 3: "vs", 4: "vb", 6: "t"}  # RFC 8428, table 4

ANALYTICS = """
[analytics.lamp.driver]
learn_nights = 1
[analytics.meter.night_flow]
hours = 1
interval_minutes = 30
nights = 1
"""
LEAK = {"mode": "off", "leak_lph": 18000.0, "leak_from": 0}


class StreetClock:
    """The street's virtual clock, for the nodes (their ``control.json``) and the gateway alike."""

    def __init__(self, street: VirtualStreet) -> None:
        self.street = street
        self.epoch, self.real, self.speed = START, time.time(), FAST
        self.wear = 0.0

    def __call__(self) -> float:
        return self.epoch + (time.time() - self.real) * self.speed

    def set(self, speed: float, wear: float | None = None) -> None:
        """Go on from now at ``speed``; the lamp's driver worn by ``wear`` from now on."""
        self.epoch, self.real, self.speed = self(), time.time(), speed
        self.wear = self.wear if wear is None else wear
        self._write()

    def _write(self) -> None:
        clock = {"epoch": self.epoch, "speed": self.speed}
        (self.street.node(1).flash / "control.json").write_text(json.dumps({**clock, "wear": self.wear}))
        (self.street.node(2).flash / "control.json").write_text(json.dumps({**clock, "water": LEAK}))



def resolve(pack: list[dict[int, Any]]) -> list[dict[str, Any]]:
    """SenML records with base name and base time applied (RFC 8428 section 4.6), by label name."""
    out, bn, bt = [], "", 0.0
    for raw in pack:
        rec = {LABELS.get(k, str(k)): v for k, v in raw.items()}
        bn, bt = rec.pop("bn", bn), rec.pop("bt", bt)
        rec["n"] = bn + rec.get("n", "")
        rec["t"] = bt + rec.get("t", 0.0)
        out.append(rec)
    return out


@pytest.mark.slow  # about 80 s: the street's start, three virtual nights and a slowed night-flow window
def test_leak_and_degrading_driver_raise_flags_upstream(tmp_path: Path, mosquitto: LocalBroker) -> None:
    street = VirtualStreet(tmp_path / "street", nodes=2, roles={2: "meter"}, heapsize="128K")
    with street:
        manifest = street.start()
        clock = StreetClock(street)
        clock.set(FAST)
        # The photocell: dark below 50 lx, day above 200 (no clock is set: the lamp follows its photocell).
        _set_photocell(street)
        text = gateway_toml(manifest, broker_url=mosquitto.url, site="e2e", gateway="gw", interval=0.15)
        config = parse_config(text + ANALYTICS + f'\n[delivery]\noutbox = "{tmp_path / "outbox.db"}"\n')
        gateway = Gateway(config, clock=clock)
        got: queue.Queue[tuple[str, list[dict[str, Any]]]] = queue.Queue()
        sub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        sub.on_message = lambda _c, _u, m: got.put((m.topic, resolve(cbor2.loads(m.payload))))
        sub.connect(mosquitto.host, mosquitto.port)
        sub.subscribe(gateway.topics.event("#"), qos=1)
        sub.loop_start()
        flags: dict[str, dict[str, Any]] = {}

        async def main() -> None:
            task = asyncio.create_task(gateway.run())
            try:
                await _until(lambda: gateway.analytics is not None, 30)
                assert gateway.analytics is not None
                engine = gateway.analytics.analytics
                # The first (short) night teaches the lamp's baseline; then its driver starts to fail.
                await _until(lambda: engine.state("lamp-1", "lamp").get("learned") == 1, 60)
                clock.set(FAST, wear=0.2)
                # The next night-flow window (02:00-03:00) at five minutes a second, for the meter's sake.
                window = (clock() - 1.5 * 3600) // DAY * DAY + DAY + 1.5 * 3600  # the next 01:30
                await _until(lambda: clock() >= window, 60)
                clock.set(SLOW)
                await _until(lambda: clock() >= window + 1.75 * 3600, 60)
                clock.set(FAST)
                await _until(lambda: _collect(got, flags) >= {"lamp.driver_drift", "water.night_flow"}, 60,
                             lambda: f"flags {sorted(flags)}, clock {gateway.clock() - START:.0f} s from the start, "
                                     f"lamp {engine.state('lamp-1', 'lamp')}, meter {engine.state('meter-2', 'meter')}")
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 30)

        try:
            asyncio.run(main())
        finally:
            sub.loop_stop()
            sub.disconnect()
    leak = flags["water.night_flow"]
    assert leak["topic"].endswith("/event/meter-2")
    assert leak["flag_observed"] > 0 and leak["flag_baseline"] == 0
    assert len(leak["evidence"]) == 1 and "minimum night flow" in leak["flag_detail"]
    drift = flags["lamp.driver_drift"]
    assert drift["topic"].endswith("/event/lamp-1")
    # The physics draw 65.7 W at full light; a 20 % worn driver 20 % more.
    assert 60 < drift["flag_baseline"] < 70
    assert 1.15 < drift["flag_observed"] / drift["flag_baseline"] < 1.25
    assert drift["flag_seq"] >= 2**40
    assert "learned" in drift["flag_detail"]


def _set_photocell(street: VirtualStreet) -> None:
    from pymodbus.client import ModbusSerialClient

    lamp = load("lamp")
    client = ModbusSerialClient(street.master_device, baudrate=street.baud, timeout=1.0, retries=3)
    assert client.connect()
    try:
        for name, value in (("photo_on", 50), ("photo_off", 200)):
            rr = client.write_register(lamp[name].address, value, device_id=1)
            assert not rr.isError(), rr
    finally:
        client.close()


def _collect(got: queue.Queue[tuple[str, list[dict[str, Any]]]], flags: dict[str, dict[str, Any]]) -> set[str]:
    """Drain what paho received: the first flag of each rule, its records by name."""
    while not got.empty():
        topic, records = got.get()
        current: dict[str, Any] | None = None
        for rec in records:
            name = rec["n"].rsplit(":", 1)[-1]
            if name == "flag":
                current = {"topic": topic, "rule": rec["vs"], "evidence": []}
                flags.setdefault(rec["vs"], current)
            elif current is not None and name == "flag_evidence":
                current["evidence"].append((rec["t"], rec["v"]))
            elif current is not None and name.startswith("flag_"):
                current[name] = rec.get("v", rec.get("vs"))
            elif name in ("event", "report"):
                current = None
    return set(flags)


async def _until(condition: Any, within: float, why: Any = lambda: "") -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"condition not reached in time: {why()}"
        await asyncio.sleep(0.1)
