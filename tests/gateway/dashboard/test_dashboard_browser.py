"""The dashboard in a real headless browser (Debian's chromium through chromium-driver and Selenium), against the
real gateway (``streetedge run``) on the virtual street (three lamps on the MicroPython unix port) with Mosquitto.

One street, one gateway and one browser serve the whole module; the tests run in file order and leave the
street as they found it (the alarm test last, restoring the mains).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from tools.broker import LocalBroker
from tools.dashboard_setup import DashboardLogin, enable_dashboard, free_port
from tools.keys import commands_toml
from tools.sim.street import VirtualStreet
from tools.street_config import write_gateway_toml

REPO = Path(__file__).resolve().parents[3]
WAIT = 60.0
"""Seconds a page condition may take to hold (a loaded machine; conditions are waited on, never timed)."""


class Rig:
    """The street, the gateway process, the dashboard's login and the browser."""

    def __init__(self, street: VirtualStreet, login: DashboardLogin, driver: webdriver.Chrome) -> None:
        self.street = street
        self.login = login
        self.driver = driver

    def wait(self, ok: Callable[[webdriver.Chrome], Any], what: str, within: float = WAIT) -> Any:
        # A reconnected event stream redraws the rows: an element read a moment before may be gone.
        return WebDriverWait(self.driver, within, poll_frequency=0.2,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
                             ).until(ok, message=what)

    def log_in(self, password: str | None = None) -> None:
        d = self.driver
        d.get(self.login.url + "login")
        d.find_element(By.ID, "name").send_keys(self.login.user)
        d.find_element(By.ID, "password").send_keys(password or self.login.password)
        d.find_element(By.ID, "submit").click()

    def values(self, node: str) -> dict[str, float]:
        """The numbers the node's row shows now, by name."""
        text = self.wait(lambda d: d.find_element(By.CSS_SELECTOR, f"#node-{node} td.values").text,
                         f"{node}'s values")
        return {m[0]: float(m[1]) for m in re.findall(r"(\w+)=(-?[\d.]+)", text)}

    def command(self, target: str, action: str, level: int | None = None, on: bool | None = None) -> str:
        """Give a command with the page's form; the result line once the page has it."""
        d = self.driver
        Select(d.find_element(By.ID, "target")).select_by_value(target)
        Select(d.find_element(By.ID, "action")).select_by_value(action)
        if level is not None:
            field = d.find_element(By.ID, "level")
            field.clear()
            field.send_keys(str(level))
        if on is not None and d.find_element(By.ID, "on").is_selected() != on:
            d.find_element(By.ID, "on").click()
        d.find_element(By.ID, "send").click()
        self.wait(lambda d: "waiting" not in d.find_element(By.ID, "result").text
                  and d.find_element(By.ID, "result").text, f"a result for {action} {target}")
        return str(d.find_element(By.ID, "result").text)


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the gateway exited: {log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the dashboard never answered on {url}: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, chromium: webdriver.Chrome) -> Iterator[Rig]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with LocalBroker("mosquitto") as broker, VirtualStreet(tmp / "street", nodes=3) as street:
        manifest = street.start()
        config = write_gateway_toml(tmp / "gateway.toml", manifest, broker_url=broker.url, site="dash-site",
                                    gateway="dash-gw", groups={"north": ["lamp-1", "lamp-2"]})
        config.write_text(config.read_text() + "\n[http]\nenabled = false\n" + commands_toml(tmp))
        login = enable_dashboard(config, tmp, port=free_port(0), history_interval=1.0)
        log = tmp / "gateway.log"
        with log.open("wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "-c", str(config)], cwd=REPO,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_http(login.url + "login", proc, log)
            yield Rig(street, login, chromium)
        finally:
            proc.terminate()
            proc.wait(60)


def test_a_wrong_password_is_refused(rig: Rig) -> None:
    rig.log_in(password="not-the-password")
    rig.wait(lambda d: "Wrong name or password" in d.find_element(By.ID, "message").text, "the refusal")
    rig.driver.get(rig.login.url)
    assert rig.driver.current_url.endswith("/login"), "no session after a wrong password"


def test_the_page_shows_every_node_live(rig: Rig) -> None:
    rig.log_in()
    rig.wait(lambda d: d.find_element(By.ID, "live").text == "live", "the event stream")
    for node in ("lamp-1", "lamp-2", "lamp-3"):
        row = rig.wait(lambda d, n=node: d.find_element(By.ID, f"node-{n}").find_element(
            By.CSS_SELECTOR, ".state").text.startswith("online") and d.find_element(By.ID, f"node-{n}"),
            f"{node} online")
        assert "RS-485 bus0" in row.find_element(By.CSS_SELECTOR, ".link").text
        assert re.search(r"power=[\d.]+ W", row.find_element(By.CSS_SELECTOR, ".values").text)
        assert rig.driver.find_element(By.ID, f"lamp-{node}").is_displayed()
    first = rig.values("lamp-1")
    # Live: the node's energy counter or its age moves without a reload.
    rig.wait(lambda d: rig.values("lamp-1") != first, "lamp-1's values to change")
    assert "broker connected" in rig.driver.find_element(By.ID, "broker").text


def test_a_command_without_its_csrf_token_is_refused(rig: Rig) -> None:
    status = rig.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch("/api/command", {method: "POST", headers: {"Content-Type": "application/json"},
              body: JSON.stringify({target: "lamp-1", action: "dim", params: {level: 5}})})
          .then((r) => done(r.status));""")
    assert status == 403
    assert rig.values("lamp-1").get("dim_level") != 5


def test_a_click_dims_a_lamp_and_its_measured_power_follows(rig: Rig) -> None:
    assert rig.command("all", "dim", level=100).startswith("done"), "the whole street at full light"
    assert rig.command("all", "switch", on=True).startswith("done")
    full = rig.wait(lambda d: rig.values("lamp-2").get("power", 0) > 40 and rig.values("lamp-2")["power"],
                    "lamp-2 at full power")
    rig.wait(lambda d: rig.values("lamp-1").get("power", 0) > full * 0.8, "lamp-1 at full power")
    result = rig.command("lamp-2", "dim", level=20)
    assert result.startswith("done") and "confirmed" in result, result
    rig.wait(lambda d: rig.values("lamp-2").get("power", full) < full * 0.5, "lamp-2's power to follow the dim")
    assert rig.values("lamp-2")["dim_level"] == 20
    assert rig.values("lamp-1").get("power", 0) > full * 0.8, "the other lamps stay"
    who = rig.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#actions td.who"), "who did what")
    assert who[0].text == rig.login.user


def test_an_alarm_raised_in_the_simulator_appears_without_a_reload(rig: Rig) -> None:
    marker = rig.driver.execute_script("window.sameDocument = 1; return window.sameDocument;")
    control = Path(rig.street.node(3).flash) / "control.json"
    control.write_text(json.dumps({"mains": False}))
    try:
        rig.wait(lambda d: any("lamp-3" in e.text and "supply loss RAISED" in e.text
                               for e in d.find_elements(By.CSS_SELECTOR, "#events li")), "the supply-loss alarm")
        assert "alarm" in rig.driver.find_element(By.CSS_SELECTOR, "#node-lamp-3 .state").text
        assert "fault" in (rig.driver.find_element(By.ID, "lamp-lamp-3").get_attribute("class") or "")
        assert rig.driver.execute_script("return window.sameDocument;") == marker, "the page was not reloaded"
    finally:
        control.write_text(json.dumps({"mains": True}))


def test_a_phone_sized_viewport_is_usable(rig: Rig) -> None:
    d = rig.driver
    d.set_window_size(390, 844)
    try:
        d.get(rig.login.url)
        rig.wait(lambda d: d.find_element(By.ID, "live").text == "live", "the event stream")
        rig.wait(lambda d: d.find_element(By.ID, "node-lamp-3").is_displayed(), "the node table")
        assert d.execute_script("return document.documentElement.scrollWidth <= window.innerWidth"), \
            "nothing wider than the phone's screen"
        send = d.find_element(By.ID, "send")
        assert send.is_displayed() and send.size["height"] >= 30, "a button a thumb can press"
        assert rig.command("lamp-1", "dim", level=100).startswith("done")
    finally:
        d.set_window_size(1280, 1000)
