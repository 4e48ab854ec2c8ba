"""BLE nodes on the page: their transport, radio address, signal and advert age, state and values.

The end-to-end test runs the real gateway with its dashboard and a BLE meter on the virtual radio (a Bumble
device advertises, bleak scans through the Bumble backend), with Mosquitto, as
tests/gateway/transport/test_ble_gateway.py does, and reads the page's data over HTTP like a browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.dashboard.server import Dashboard
from gateway.dashboard.view import street_view
from gateway.service.config import Config, parse_config
from gateway.service.daemon import Gateway
from gateway.service.stats import NodeStats
from protocols.roles import meter
from tools.sim.ble_beacons import Beacon
from tools.sim.bleak_bumble import scanner_backend
from tools.sim.radio import VirtualRadio

KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
ADDRESS = "d0:5e:00:00:00:07"


def ble_toml(tmp_path: Path) -> str:
    return f"""
[ble]
counters = "{tmp_path / 'ble.sqlite'}"
[[ble.node]]
id = "pit-7"
address = "{ADDRESS}"
key = "{KEY.hex()}"
role = "meter"
interval = 0.5
"""


def test_the_view_names_each_nodes_transport(make_config: Callable[..., Config], kit: Any, tmp_path: Path) -> None:
    """RS-485 nodes with bus and unit; a BLE node after them with its address, RSSI, state and alarms."""
    config = parse_config(kit.dashboard_toml(tmp_path) + ble_toml(tmp_path))
    stats = kit.stats_for(config)
    stats.nodes["pit-7"] = NodeStats("pit-7", "ble", 0, "meter-ble", online=True, last_poll=990.0, rssi=-71,
                                     values={"seq": 4, "volume": 125, "status": meter.STATUS_LEAK, "battery": 3.3})
    view = street_view(config, stats, 0, now=1000.0)
    assert [(n["id"], n["transport"]) for n in view["nodes"]] == [
        ("lamp-1", "RS-485"), ("lamp-2", "RS-485"), ("lamp-3", "RS-485"), ("pit-7", "BLE")]
    assert "address" not in view["nodes"][0] and view["nodes"][0]["bus"] == "bus0"
    pit = view["nodes"][3]
    assert pit["address"] == ADDRESS.upper() and pit["rssi"] == -71
    assert pit["state"] == "alarm" and pit["alarms"] == ["leak"]
    assert view["ts"] - pit["last_poll"] == 10.0  # the advert's age, as the page shows it
    assert view["units"]["meter-ble"]["volume"] == "l"  # the map's unit (SenML: litre)
    # Its history: the values of a meter that its adverts carry (a volume, no flow).
    assert view["plotted"] == {"lamp": ["power", "energy"], "meter-ble": ["volume"]}
    dashboard = Dashboard(config, stats, None)
    try:
        assert ("pit-7", "meter-ble", "volume", 125.0) in dashboard.samples()
    finally:
        dashboard.history.close()


def test_a_ble_meter_is_on_the_page_with_its_signal_and_its_alarm(mosquitto: Any, tmp_path: Path, kit: Any) -> None:
    config = parse_config(f"""
site = "test-site"
gateway = "gw"
[broker]
url = "{mosquitto.url}"
[delivery]
outbox = "{tmp_path / 'outbox.db'}"
[dashboard]
enabled = true
port = 0
[[dashboard.user]]
name = "ana"
password = "{kit.password_hash}"
""" + ble_toml(tmp_path))
    radio = VirtualRadio()
    gateway = Gateway(config, ble_backend=scanner_backend(radio))

    async def until(check: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + 60
        while not (value := await check()):
            assert time.monotonic() < deadline, "condition not reached in time"
            await asyncio.sleep(0.05)
        return value

    async def main() -> None:
        node = Beacon(radio, ADDRESS.upper(), KEY, "meter", interval_ms=20)
        await node.start()
        task = asyncio.create_task(gateway.run())
        try:
            async def started() -> bool:
                assert not task.done(), "the gateway stopped"
                return gateway.dashboard is not None and gateway.ble is not None
            await until(started)
            assert gateway.dashboard is not None
            url = gateway.dashboard.url
            async with await kit.browser_session(url) as session:
                async def pit(volume: int) -> dict[str, Any] | None:
                    state = await (await session.get(url + "api/state")).json()
                    found = [n for n in state["nodes"] if n["id"] == "pit-7"]
                    assert len(found) == 1, state["nodes"]
                    return found[0] if found[0]["values"].get("volume") == volume else None

                await node.reading([3300, 120])
                shown = await until(lambda: pit(120))
                assert shown["transport"] == "BLE" and shown["address"] == ADDRESS.upper()
                assert shown["state"] == "online" and shown["values"]["battery"] == 3.3
                assert isinstance(shown["rssi"], int) and -127 <= shown["rssi"] <= 20
                assert shown["last_poll"] == gateway.stats.nodes["pit-7"].last_poll
                await node.reading([3300, 125], meter.STATUS_LEAK)
                shown = await until(lambda: pit(125))
                assert shown["state"] == "alarm" and shown["alarms"] == ["leak"]
            # The feed saw the leak raised and said so to every browser.
            events = list(gateway.dashboard.feed.events)
            assert any(e["kind"] == "alarm" and e["node"] == "pit-7" and e["alarm"] == "leak" and e["raised"]
                       for e in events), events
        finally:
            gateway.stop()
            async with asyncio.timeout(30):
                await task

    asyncio.run(main())
