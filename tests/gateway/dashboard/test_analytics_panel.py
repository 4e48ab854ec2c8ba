"""Edge analytics on the page: flags in the live event list, the energy saved per street and night.

The end-to-end test runs the real gateway (a pymodbus lamp on a pty, Mosquitto, the analytics engine, the
dashboard's aiohttp server) with the test's clock jumping from night to noon, as
tests/gateway/analytics/test_feed.py does, and reads the page's event stream over HTTP like a browser.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp

from gateway.analytics.flags import REPORT, Flag
from gateway.contracts import load_role
from gateway.dashboard.analytics import NIGHTS_KEPT, AnalyticsPanel
from gateway.dashboard.feed import Feed
from gateway.dashboard.history import History
from gateway.service.config import Config
from gateway.service.daemon import Gateway

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC
LAMP = load_role("lamp")
NIGHT0 = int((T0 - 43200) // 86400) + 1  # the night of T0's evening (nights run from noon to noon)


def street_report(street: str, night: int, used: float, full: float) -> Flag:
    figures = {"full_wh": full, "lamps": 2.0, "night": float(night), "saved_wh": full - used,
               "share": (full - used) / full, "used_wh": used}
    return Flag(street, "lamp.street_energy_saved", T0 + night, full, full - used, (), "night", REPORT,
                tuple(sorted(figures.items())))


def test_flags_become_events_and_street_reports_the_energy_table(make_config: Callable[..., Config],
                                                                    kit: Any, tmp_path: Path) -> None:
    config = make_config()
    history_file = str(tmp_path / "history.sqlite")

    async def scenario() -> list[dict[str, Any]]:
        feed = Feed(config, kit.stats_for(config), clock=lambda: T0)
        history = History(history_file, 6.0)
        panel = AnalyticsPanel(feed, history)
        browser = feed.subscribe()
        assert json.loads((await browser.get())[1])["energy"] == []  # type: ignore[index]
        drift = Flag("lamp-2", "lamp.driver_drift", T0 - 60, 60.0, 66.0, ((T0 - 3600, 1.1),),
                     "66 W at 100 % against the 60 W it learned")
        lamp_report = Flag("lamp-2", "lamp.energy_saved", T0, 660.0, 360.0, (), "night", REPORT,
                           (("night", float(NIGHT0)),))
        panel.take([drift, lamp_report])
        kind, data = await browser.get()  # type: ignore[misc]
        event = json.loads(data)
        assert kind == "event" and event == {
            "kind": "analytics", "ts": T0, "node": "lamp-2", "rule": "lamp.driver_drift", "at": T0 - 60,
            "baseline": 60.0, "observed": 66.0, "evidence": [[T0 - 3600, 1.1]],
            "detail": "66 W at 100 % against the 60 W it learned"}
        assert browser.empty(), "a lamp's own report is not an event (250 of them each morning)"
        assert feed.energy == []
        for night in range(NIGHT0, NIGHT0 + NIGHTS_KEPT + 2):
            panel.take([street_report("bus0", night, used=300.0 + night - NIGHT0, full=660.0)])
        panel.take([street_report("bus1", NIGHT0, used=100.0, full=400.0)])
        kinds = []
        while not browser.empty():
            kind, data = await browser.get()  # type: ignore[misc]
            kinds.append(kind)
        assert kinds == ["energy"] * (NIGHTS_KEPT + 3)
        rows = json.loads(data)
        assert rows == feed.energy
        assert [(r["street"], r["night"]) for r in rows] == (
            [("bus0", n) for n in range(NIGHT0 + NIGHTS_KEPT + 1, NIGHT0 + 1, -1)] + [("bus1", NIGHT0)])
        newest = rows[0]
        assert newest["used_wh"] == 300.0 + NIGHTS_KEPT + 1 and newest["full_wh"] == 660.0 and newest["lamps"] == 2
        assert newest["saved_wh"] == 660.0 - newest["used_wh"]
        # A browser that connects later gets the table in its first message.
        late = feed.subscribe()
        assert json.loads((await late.get())[1])["energy"] == rows  # type: ignore[index]
        await panel.flush()
        history.close()
        return rows

    rows = asyncio.run(scenario())
    # A restarted gateway's page shows the same nights, from the history file.
    feed = Feed(config, kit.stats_for(config), clock=lambda: T0)
    history = History(history_file, 6.0)
    try:
        AnalyticsPanel(feed, history)
        assert feed.energy == rows
    finally:
        history.close()


def test_api_state_carries_the_energy_table(make_config: Callable[..., Config], kit: Any) -> None:
    async def scenario() -> None:
        async with kit.served(make_config()) as (client, dashboard):
            await kit.log_in(client)
            dashboard.analytics.take([street_report("bus0", NIGHT0, used=300.0, full=660.0)])
            state = await (await client.get("/api/state")).json()
            assert [(r["street"], r["saved_wh"]) for r in state["energy"]] == [("bus0", 360.0)]
    asyncio.run(scenario())


async def sse(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[str, Any]]:
    """The (event, data) messages of a server-sent event stream."""
    kind, data = "", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            data = line[6:]
        elif not line and kind:
            yield kind, json.loads(data)
            kind, data = "", ""


def test_a_gateways_flags_and_energy_reach_the_open_page_live(
    pty_pair: Any, sim: Any, mosquitto: Any, tmp_path: Any, kit: Any,
) -> None:
    """Night one teaches the lamp's draw and reports its energy; night two draws 10 % more: the drift flag
    and both nights' street figures arrive on an event stream opened before them."""
    gw_end, node_end = pty_pair
    extra = ("[analytics.lamp.driver]\nlearn_nights = 1\n"
             "[dashboard]\nenabled = true\nport = 0\n"
             f'[[dashboard.user]]\nname = "ana"\npassword = "{kit.password_hash}"\n')
    config = sim.config(gw_end, mosquitto.url, interval=0.05, extra=extra)
    now = [T0 + 20 * 3600]
    gateway = Gateway(config, clock=lambda: now[0])
    lamp = sim.lamp(1, power=60.0, level_actual=100, level_target=100, power_factor=0.95, energy=10_000,
                    burn_time=50_000)
    lamp.holding[LAMP["rated_power"].address] = 66

    async def polls(n: int) -> None:
        target = gateway.stats.nodes["lamp-1"].polls + n
        deadline = time.monotonic() + 30
        while gateway.stats.nodes["lamp-1"].polls < target:
            assert time.monotonic() < deadline, "the gateway stopped polling"
            await asyncio.sleep(0.01)

    async def phase(hour: float, **values: float) -> None:
        """The lamp's registers change, two polls pass (none under way carries the old ones on), then the clock
        moves to ``hour`` after T0 and two polls happen at it."""
        lamp.values.update(values)
        await polls(2)
        now[0] = T0 + hour * 3600
        await polls(2)

    async def night(start: float, power: float, energy: float, burn: float) -> None:
        """Lit at 100 % drawing ``power`` from ``start`` for ten hours: ``energy`` Wh used; then noon, off."""
        await phase(start, power=power, level_actual=100, level_target=100, energy=energy, burn_time=burn)
        await phase(start + 8, energy=energy + power * 5, burn_time=burn + 36_000)
        await phase(start + 16, power=0.0, level_actual=0, level_target=0)

    async def main() -> list[tuple[str, Any]]:
        async with sim.serve(node_end, [lamp]):
            task = asyncio.create_task(gateway.run())
            seen: list[tuple[str, Any]] = []
            try:
                while gateway.stats.nodes.get("lamp-1") is None or gateway.dashboard is None:
                    assert not task.done(), "the gateway stopped"
                    await asyncio.sleep(0.01)
                url = gateway.dashboard.url
                async with await kit.browser_session(url) as session, session.get(url + "api/events") as stream:
                    messages = sse(stream)
                    seen.append(await anext(messages))
                    assert seen[0][0] == "state" and seen[0][1]["energy"] == []

                    async def until(match: Callable[[tuple[str, Any]], bool]) -> None:
                        async with asyncio.timeout(60):
                            while not any(match(m) for m in seen):
                                seen.append(await anext(messages))

                    await night(20, power=60.0, energy=10_000, burn=50_000)  # the baseline night, 10 h lit
                    await until(lambda m: m[0] == "energy")
                    await night(44, power=66.0, energy=10_300, burn=86_000)  # 10 % more for the same light
                    await until(lambda m: m[0] == "energy" and len(m[1]) == 2)
                    await until(lambda m: m[0] == "event" and m[1]["kind"] == "analytics")
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 20)
            return seen

    seen = asyncio.run(main())
    energy = [data for kind, data in seen if kind == "energy"]
    nights = [dict(row) for row in energy[-1]]
    assert [(r["street"], r["night"], r["lamps"]) for r in nights] == [("bus0", NIGHT0 + 1, 1), ("bus0", NIGHT0, 1)]
    # Against the lamp's own registers: energy used over the night, and 66 W rated x 10 h lit.
    assert (nights[1]["used_wh"], nights[1]["full_wh"], nights[1]["saved_wh"]) == (300.0, 660.0, 360.0)
    assert (nights[0]["used_wh"], nights[0]["full_wh"], nights[0]["saved_wh"]) == (330.0, 660.0, 330.0)
    assert nights[0]["share"] == 0.5
    flags = [data for kind, data in seen if kind == "event" and data["kind"] == "analytics"]
    assert [(f["node"], f["rule"], f["baseline"], f["observed"]) for f in flags] == [
        ("lamp-1", "lamp.driver_drift", 60.0, 66.0)]
    assert flags[0]["evidence"] and "learned" in flags[0]["detail"]
    assert T0 + 44 * 3600 <= flags[0]["at"] <= T0 + 60 * 3600
