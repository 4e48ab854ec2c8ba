"""The page draws what BLE nodes and edge analytics add, in a real headless browser (Debian's chromium).

The dashboard is the real one (aiohttp server, feed, history, auth) over a gateway's live state set by the test,
as the pollers and the advert receiver would set it, running in its own thread and event loop; flags are handed
to it as the gateway's analytics does. tests/gateway/dashboard/test_ble_nodes.py and test_analytics_panel.py
run the same data end to end through a real gateway.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from gateway.analytics.flags import REPORT, Flag
from gateway.dashboard.server import Dashboard
from gateway.service.config import parse_config
from gateway.service.stats import GatewayStats, NodeStats
from protocols.roles import meter

T0 = 1_772_409_600.0  # 2026-03-02 00:00 UTC
NIGHT = int(T0 // 86400)  # the night of 2 March (its evening's day since the epoch)
WAIT = 60.0
"""Seconds a page condition may take to hold (a loaded machine; conditions are waited on, never timed)."""


def street_report(night: int, used: float, full: float = 1980.0) -> Flag:
    """Street bus0's nightly energy report, three lamps, as the analytics engine words it."""
    figures = {"full_wh": full, "lamps": 3.0, "night": float(night), "saved_wh": full - used,
               "share": (full - used) / full, "used_wh": used}
    return Flag("bus0", "lamp.street_energy_saved", T0, full, full - used, (), "night", REPORT,
                tuple(sorted(figures.items())))


class Served:
    """A dashboard serving from its own thread; :meth:`call` runs a function in its loop and returns the result."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="dashboard", daemon=True)
        self._thread.start()
        self.call(dashboard.start)

    def call(self, function: Callable[[], Any]) -> Any:
        async def run() -> Any:
            result = function()
            return await result if asyncio.iscoroutine(result) else result
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(WAIT)

    def close(self) -> None:
        self.call(self.dashboard.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(WAIT)
        self.loop.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory, chromium: webdriver.Chrome,
         kit: Any) -> Iterator[tuple[Served, webdriver.Chrome]]:
    tmp = tmp_path_factory.mktemp("page")
    config = parse_config(kit.dashboard_toml(tmp) + f"""
[ble]
counters = "{tmp / 'ble.sqlite'}"
[[ble.node]]
id = "pit-7"
address = "d0:5e:00:00:00:07"
key = "00112233445566778899aabbccddeeff"
""")
    stats = GatewayStats()
    for n in config.node:
        stats.nodes[n.id] = NodeStats(n.id, n.bus, n.unit, n.role, online=True, last_poll=T0,
                                      values={"dim_level": 100, "power": 60.0, "status": 0})
    served = Served(Dashboard(config, stats, None, clock=lambda: T0 + 4.0))
    served.call(lambda: stats.nodes.__setitem__("pit-7", NodeStats(
        "pit-7", "ble", 0, "meter-ble", online=True, last_poll=T0, rssi=-71,
        values={"seq": 4, "volume": 125, "status": meter.STATUS_LEAK, "battery": 3.3})))
    served.call(lambda: served.dashboard.analytics.take([street_report(NIGHT, used=990.0)]))
    try:
        chromium.get(served.dashboard.url + "login")
        chromium.find_element(By.ID, "name").send_keys("ana")
        chromium.find_element(By.ID, "password").send_keys(kit.password)
        chromium.find_element(By.ID, "submit").click()
        yield served, chromium
    finally:
        served.close()


def wait(driver: webdriver.Chrome, ok: Callable[[webdriver.Chrome], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
                         ).until(ok, message=what)


def test_a_ble_node_shows_its_address_signal_advert_age_state_and_values(page: tuple[Served, Any]) -> None:
    _, d = page
    # The rows are redrawn when the event stream's first state arrives: read them afresh each time.
    wait(d, lambda d: d.find_element(By.ID, "live").text == "live", "the event stream")

    def cell(name: str) -> str:
        return str(wait(d, lambda d: d.find_element(By.CSS_SELECTOR, f"#node-pit-7 .{name}").text, f"pit-7's {name}"))

    wait(d, lambda d: cell("link") == "BLE D0:5E:00:00:00:07 -71 dBm", "its link")
    assert cell("age") == "advert 4.0 s"
    assert cell("state") == "alarm: leak"
    assert "volume=125 l" in cell("values")
    assert d.find_element(By.CSS_SELECTOR, "#node-lamp-1 .link").text == "RS-485 bus0/1"


def test_the_energy_saved_per_street_and_night_is_shown(page: tuple[Served, Any]) -> None:
    _, d = page
    cells = wait(d, lambda d: d.find_elements(By.CSS_SELECTOR, "#energy tbody tr td"), "the energy table")
    assert [c.text for c in cells] == ["bus0", "2026-03-02", "3", "0.99 kWh", "1.98 kWh", "0.99 kWh (50.0 %)"]
    assert d.find_element(By.ID, "energy-section").is_displayed()


def test_a_flag_appears_in_the_event_list_as_it_is_raised(page: tuple[Served, Any]) -> None:
    served, d = page
    wait(d, lambda d: d.find_element(By.ID, "live").text == "live", "the event stream")
    marker = d.execute_script("window.sameDocument = 1; return window.sameDocument;")
    served.call(lambda: served.dashboard.analytics.take([Flag(
        "lamp-2", "lamp.driver_drift", T0, 60.0, 66.0, ((T0 - 3600, 1.1),),
        "power at 100 % 66.0 W against 60.0 W learned")]))
    item = wait(d, lambda d: next((e for e in d.find_elements(By.CSS_SELECTOR, "#events li")
                                   if "lamp.driver_drift" in e.text), None), "the flag in the event list")
    fired, evidence = (d.execute_script("return new Date(arguments[0] * 1000).toLocaleTimeString();", t)
                       for t in (T0, T0 - 3600))
    assert item.text == (f"{fired} lamp-2: lamp.driver_drift FLAGGED (baseline 60, observed 66): "
                         f"power at 100 % 66.0 W against 60.0 W learned; evidence 1.10 at {evidence}")
    assert "analytics" in (item.get_attribute("class") or "")
    assert d.execute_script("return window.sameDocument;") == marker, "the page was not reloaded"
    # A new street figure replaces the table without a reload too.
    served.call(lambda: served.dashboard.analytics.take([street_report(NIGHT + 1, used=1320.0)]))
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#energy tbody tr")) == 2, "the next night's figures")
    first = d.find_elements(By.CSS_SELECTOR, "#energy tbody tr")[0].text
    assert "2026-03-03" in first and "0.66 kWh (33.3 %)" in first
