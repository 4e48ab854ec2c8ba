"""``streetedge dashboard-shots``: the dashboard's screenshots in docs/images/, made from a live virtual street.

Starts Mosquitto, a virtual street (six lamps, a water meter and an environment node on the MicroPython
unix port), the real gateway (``streetedge run``) with the dashboard, and headless chromium; gives a few
commands from the page, cuts one lamp's mains in the simulator (a supply-loss alarm), waits for the plots
to have history, and saves:

- ``dashboard-street.png``: the page, street and node list;
- ``dashboard-node.png``: one lamp selected, its values and plots;
- ``dashboard-plots.png``: the street's energy, water and air plots;
- ``dashboard-alarms.png``: alarms and events as they arrived;
- ``dashboard-phone.png``: the page on a phone-sized screen.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tools.broker import LocalBroker
from tools.dashboard_setup import enable_dashboard, free_port
from tools.keys import commands_toml
from tools.sim.street import VirtualStreet
from tools.street_config import write_gateway_toml

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images"
HISTORY_SECONDS = 40.0
"""Seconds of history gathered before the plots are taken (sampled every second)."""


def make_screenshots(out: Path = OUT, *, history_seconds: float = HISTORY_SECONDS) -> list[Path]:
    """Make the screenshots; returns their paths."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="streetedge-shots-"))
    saved: list[Path] = []
    roles = {7: "meter", 8: "env"}
    with LocalBroker("mosquitto") as broker, VirtualStreet(work / "street", nodes=8, roles=roles) as street:
        manifest = street.start()
        lamps = [n["id"] for n in manifest["nodes"] if n["role"] == "lamp"]
        config = write_gateway_toml(work / "gateway.toml", manifest, broker_url=broker.url, site="elm-street",
                                    gateway="cabinet-12", groups={"lamps": lamps, "north": lamps[:3]})
        config.write_text(config.read_text() + "\n[http]\nenabled = false\n" + commands_toml(work))
        login = enable_dashboard(config, work, port=free_port(0), user="ana", history_interval=1.0)
        with (work / "gateway.log").open("wb") as log:
            gateway = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "-c", str(config)],
                                       stdout=log, stderr=subprocess.STDOUT)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                    "--window-size=1280,1100", "--hide-scrollbars"):
            options.add_argument(arg)
        driver = None
        try:
            _wait_http(login.url + "login")
            driver = webdriver.Chrome(options=options, service=Service(executable_path=shutil.which("chromedriver")
                                                                        or "chromedriver"))
            wait = WebDriverWait(driver, 120, poll_frequency=0.3)
            driver.get(login.url + "login")
            driver.find_element(By.ID, "name").send_keys(login.user)
            driver.find_element(By.ID, "password").send_keys(login.password)
            driver.find_element(By.ID, "submit").click()
            wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
            wait.until(lambda d: all("online" in d.find_element(By.CSS_SELECTOR, f"#node-{n} .state").text
                                     for n in lamps))

            def command(target: str, action: str, level: int | None = None) -> None:
                Select(driver.find_element(By.ID, "target")).select_by_value(target)
                Select(driver.find_element(By.ID, "action")).select_by_value(action)
                if level is not None:
                    driver.find_element(By.ID, "level").clear()
                    driver.find_element(By.ID, "level").send_keys(str(level))
                driver.find_element(By.ID, "send").click()
                wait.until(lambda d: "waiting" not in d.find_element(By.ID, "result").text)

            command("group:lamps", "switch")
            command("group:lamps", "dim", 100)
            time.sleep(history_seconds / 2)
            command("group:north", "dim", 30)
            command(lamps[4], "dim", 60)
            (Path(street.node(6).flash) / "control.json").write_text(json.dumps({"mains": False}))
            wait.until(lambda d: "RAISED" in d.find_element(By.ID, "events").text)
            time.sleep(history_seconds / 2)
            driver.refresh()  # the plots load their history once a minute; a reload draws them now
            wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#plots polyline")) >= 3)

            def shoot(name: str, element_id: str | None = None) -> None:
                path = out / name
                if element_id is None:
                    driver.save_screenshot(str(path))
                else:
                    driver.find_element(By.ID, element_id).screenshot(str(path))
                saved.append(path)

            shoot("dashboard-street.png")
            driver.set_window_size(1280, 2400)  # an element is shot whole only inside the window
            shoot("dashboard-plots.png", "plots-section")
            shoot("dashboard-alarms.png", "events-section")
            driver.find_element(By.ID, f"lamp-{lamps[1]}").click()
            wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#detail polyline")) >= 1)
            shoot("dashboard-node.png", "nodes-section")
            driver.set_window_size(390, 1100)
            driver.refresh()
            wait.until(lambda d: d.find_element(By.ID, "live").text == "live")
            shoot("dashboard-phone.png")
        finally:
            if driver is not None:
                driver.quit()
            gateway.terminate()
            gateway.wait(60)
    shutil.rmtree(work, ignore_errors=True)
    return saved


def _wait_http(url: str, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
