"""A dashboard on a gateway's real parts without a street: its configuration, command router and audit log.

The nodes are never polled here (their live state is set in the gateway's stats, as the pollers would);
tests/gateway/dashboard/test_dashboard_browser.py runs the whole thing on the virtual street.
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from gateway.commands.router import CommandRouter
from gateway.dashboard.server import Dashboard
from gateway.service.config import Config, parse_config
from gateway.service.stats import GatewayStats, NodeStats
from tools.keys import public_text

PASSWORD = "correct horse battery"
# Cheap parameters (the hash carries them, and the check follows them); the gateway's own default is what
# hash_password makes, checked in test_auth.py.
HASH = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)


def dashboard_toml(tmp: Path, *, key_targets: str = '["all"]', key_actions: str = '["dim", "switch"]',
                   extra: str = "") -> str:
    """Three lamps on one bus, the page's key trusted for ``key_targets``, one user (ana)."""
    key = Ed25519PrivateKey.generate()
    key_file = tmp / "page.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    nodes = "".join(f'[[node]]\nid = "lamp-{u}"\nbus = "bus0"\nunit = {u}\n' for u in (1, 2, 3))
    return f'''site = "s"
gateway = "g"
[[bus]]
name = "bus0"
device = "/dev/null"
{nodes}
[groups]
north = ["lamp-1", "lamp-2"]
[commands]
replay_db = "{tmp / "replay.sqlite"}"
audit_log = "{tmp / "audit.jsonl"}"
[[key]]
id = "page"
public = "{public_text(key)}"
actions = {key_actions}
targets = {key_targets}
[dashboard]
enabled = true
port = 0
key_id = "page"
key_file = "{key_file}"
{extra}
[[dashboard.user]]
name = "ana"
password = "{HASH}"
'''


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    def make(**kwargs: str) -> Config:
        return parse_config(dashboard_toml(tmp_path, **kwargs))
    return make


def stats_for(config: Config) -> GatewayStats:
    stats = GatewayStats()
    for n in config.node:
        stats.nodes[n.id] = NodeStats(n.id, n.bus, n.unit, n.role)
    return stats


def router_for(config: Config, stats: GatewayStats | None = None) -> CommandRouter:
    """A real command router with no buses (nothing is polled here); close() it."""
    return CommandRouter(config, {}, stats or stats_for(config), lambda payload: None)


@asynccontextmanager
async def served(config: Config, stats: GatewayStats | None = None) -> AsyncIterator[tuple[TestClient, Dashboard]]:
    """The dashboard's app on a loopback port, with a real command router (no buses: nothing is polled)."""
    stats = stats or stats_for(config)
    router = router_for(config, stats)
    dashboard = Dashboard(config, stats, router)
    client = TestClient(TestServer(dashboard.app))
    await client.start_server()
    try:
        yield client, dashboard
    finally:
        await client.close()
        router.close()
        await dashboard.analytics.flush()
        dashboard.history.close()


async def csrf_of_login_page(client: TestClient) -> str:
    page = await (await client.get("/login")).text()
    start = page.index('name="csrf" value="') + len('name="csrf" value="')
    return page[start:page.index('"', start)]


async def log_in(client: TestClient, password: str = PASSWORD) -> int:
    """Log in as ana through the form; the status of the answer (302 on success)."""
    csrf = await csrf_of_login_page(client)
    response = await client.post("/login", data={"name": "ana", "password": password, "csrf": csrf},
                                 allow_redirects=False)
    return response.status


async def browser_session(url: str, password: str = PASSWORD) -> aiohttp.ClientSession:
    """A browser-like HTTP session logged in as ana on the dashboard at ``url`` (a running gateway's)."""
    session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # cookies for 127.0.0.1 too
    page = await (await session.get(url + "login")).text()
    start = page.index('name="csrf" value="') + len('name="csrf" value="')
    csrf = page[start:page.index('"', start)]
    answer = await session.post(url + "login", data={"name": "ana", "password": password, "csrf": csrf},
                                allow_redirects=False)
    assert answer.status == 302, await answer.text()
    return session


class Kit:
    """The helpers above, handed to tests (test folders are not importable packages)."""

    password = PASSWORD
    password_hash = HASH
    served = staticmethod(served)
    router_for = staticmethod(router_for)
    stats_for = staticmethod(stats_for)
    log_in = staticmethod(log_in)
    browser_session = staticmethod(browser_session)
    dashboard_toml = staticmethod(dashboard_toml)
    csrf_of_login_page = staticmethod(csrf_of_login_page)


@pytest.fixture(scope="module")
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium (Debian's, through chromium-driver) for one test module, 1280x1000."""
    browser, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert browser and driver, "chromium and chromium-driver are not installed: `make setup` installs them"
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield chrome
    finally:
        chrome.quit()


@pytest.fixture(scope="session")
def kit() -> type[Kit]:
    return Kit
