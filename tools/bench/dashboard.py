"""What the dashboard costs the gateway: CPU and memory with N live pages open, against none.

``streetedge bench dashboard`` starts Modbus TCP lamp simulators (:mod:`tools.sim.tcp_lamps`, 250 lamps
polled every second), Mosquitto and the real gateway (``streetedge run``) with ``[dashboard]`` enabled,
then measures the gateway process in three windows of ``--seconds``:

1. ``dashboard off``: the same gateway started without ``[dashboard]`` (the baseline);
2. ``no page open``: the dashboard served, nobody looking;
3. ``N pages open``: N clients logged in (each its own session) reading the event stream, as a browser
   does (``--clients sse``), or N headless chromium pages of the dashboard (``--clients browser``; their
   own CPU competes with the gateway's on a small machine).

Per window: gateway CPU (user + system, % of one core), resident memory at the end, and the bytes
the event streams carried. ``--write-docs`` records the table in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tools.bench import cpu_seconds, record
from tools.bench.load import Simulators, gateway_toml, rss_mb
from tools.broker import LocalBroker, free_port
from tools.dashboard_setup import DashboardLogin, enable_dashboard
from tools.keys import commands_toml

WARMUP = 10.0
"""Seconds after the gateway answers before a window starts (every node polled, history sampled)."""


@dataclass
class Window:
    """One measured window."""

    name: str
    cpu_percent: float
    rss_mb: float
    stream_bytes_per_s: float | None = 0.0
    """None: not counted (browsers' streams are read inside chromium)."""


class Streams:
    """``count`` logged-in clients reading the dashboard's event stream in a thread of their own."""

    def __init__(self, login: DashboardLogin, count: int) -> None:
        self.login = login
        self.count = count
        self.bytes = 0
        self.ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self.ready.wait(120) or self.error is not None:
            raise RuntimeError(f"the event streams did not start: {self.error!r}")

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # told to start(), which raises it
            self.error = exc
            self.ready.set()

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        # unsafe: keep cookies of an IP address (the dashboard's loopback address), which aiohttp skips by default
        sessions = [aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) for _ in range(self.count)]
        try:
            for session in sessions:
                await self._log_in(session)
            started = [asyncio.Event() for _ in sessions]
            readers = [asyncio.create_task(self._read(s, e)) for s, e in zip(sessions, started, strict=True)]
            await asyncio.gather(*(e.wait() for e in started))
            self.ready.set()
            await self._stop.wait()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
        finally:
            for session in sessions:
                await session.close()

    async def _log_in(self, session: aiohttp.ClientSession) -> None:
        page = await (await session.get(self.login.url + "login")).text()
        match = re.search(r'name="csrf" value="([^"]+)"', page)
        assert match, "no CSRF token on the login page"
        form = {"name": self.login.user, "password": self.login.password, "csrf": match[1]}
        answer = await session.post(self.login.url + "login", data=form, allow_redirects=False)
        assert answer.status == 302, f"login refused ({answer.status})"

    async def _read(self, session: aiohttp.ClientSession, started: asyncio.Event) -> None:
        async with session.get(self.login.url + "api/events", timeout=aiohttp.ClientTimeout(total=None)) as stream:
            async for chunk in stream.content.iter_any():
                self.bytes += len(chunk)
                started.set()


class Browsers:
    """``count`` headless chromium pages logged in to the dashboard (Selenium)."""

    def __init__(self, login: DashboardLogin, count: int) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.wait import WebDriverWait

        self.drivers = []
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or "chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
            options.add_argument(arg)
        for _ in range(count):
            driver = webdriver.Chrome(options=options,
                                      service=Service(executable_path=shutil.which("chromedriver") or ""))
            self.drivers.append(driver)
            driver.get(login.url + "login")
            driver.find_element(By.ID, "name").send_keys(login.user)
            driver.find_element(By.ID, "password").send_keys(login.password)
            driver.find_element(By.ID, "submit").click()
            WebDriverWait(driver, 120).until(lambda d: d.find_element(By.ID, "live").text == "live")
        self.bytes = 0

    def close(self) -> None:
        for driver in self.drivers:
            driver.quit()


def tick_cost(nodes: int, pages: int, ticks: int = 50) -> tuple[float, int]:
    """Milliseconds of one feed tick in this process (view, changes, one encoding) with ``nodes`` lamps whose
    every poll moves three values, and the bytes of one update; ``pages`` subscribers drained each tick."""
    from gateway.contracts import load_role
    from gateway.dashboard.feed import Feed
    from gateway.service.config import parse_config
    from gateway.service.stats import GatewayStats, NodeStats

    lines = ['site = "b"', 'gateway = "g"']
    for bus in range(-(-nodes // 247)):
        lines += ["[[bus]]", f'name = "tcp{bus}"', 'type = "tcp"', 'host = "127.0.0.1"', f"port = {1502 + bus}"]
    for n in range(nodes):
        lines += ["[[node]]", f'id = "lamp-{n + 1}"', f'bus = "tcp{n // 247}"', f"unit = {n % 247 + 1}"]
    config = parse_config("\n".join(lines))
    stats = GatewayStats()
    names = [r.name for r in load_role("lamp").registers]
    for node in config.node:
        stats.nodes[node.id] = NodeStats(node.id, node.bus, node.unit, node.role, online=True,
                                         values=dict.fromkeys(names, 1), last_poll=0.0)
    feed = Feed(config, stats)
    queues = [feed.subscribe() for _ in range(pages)]
    size, spent = 0, 0.0
    for i in range(ticks):
        for state in stats.nodes.values():
            state.values.update(seq=i, uptime=i, power=40.0 + i % 7)
            state.last_poll = float(i)
        start = time.perf_counter()
        feed.tick()
        spent += time.perf_counter() - start
        for queue in queues:
            while not queue.empty():
                message = queue.get_nowait()
                if message is not None and message[0] == "update":
                    size = len(message[1])
    return 1000 * spent / ticks, size


def history_cost(nodes: int, hours: float = 6.0, interval: float = 30.0) -> str:
    """Fill a history file to its bound (``nodes`` lamps, two plotted values, ``hours`` at ``interval``, then
    20 samplings more) and say what it costs: size, time per sampling, time of a street's and a node's plot."""
    from gateway.dashboard.history import History

    with tempfile.TemporaryDirectory() as folder:
        history = History(f"{folder}/h.sqlite", hours)
        samples = [(f"lamp-{i}", "lamp", name, 12.5) for i in range(nodes) for name in ("power", "energy")]
        spent = []
        for k in range(int(hours * 3600 / interval) + 20):
            start = time.perf_counter()
            history.add(k * interval, samples)
            spent.append(time.perf_counter() - start)
        history.close()  # a checkpoint: the WAL goes into the file
        history = History(f"{folder}/h.sqlite", hours)
        rows = history.rows()
        size = sum(p.stat().st_size for p in Path(folder).glob("h.sqlite*"))
        start = time.perf_counter()
        street = history.series("power", role="lamp", since=0)
        street_ms = 1000 * (time.perf_counter() - start)
        start = time.perf_counter()
        history.series("power", node="lamp-7", since=0)
        node_ms = 1000 * (time.perf_counter() - start)
        history.close()
    return (f"The history filled to its bound ({nodes} lamps x 2 values, {hours:g} h at {interval:g} s, "
            f"`history_cost`): {rows:,} rows, {size / 1e6:.1f} MB ({size / rows:.0f} bytes a row with its indexes); "
            "one sampling "
            f"(one transaction, in a worker thread) {1000 * sorted(spent)[len(spent) // 2]:.1f} ms (median); "
            f"a street plot ({len(street)} points) {street_ms:.1f} ms, a node's plot {node_ms:.1f} ms.\n")


def _window(name: str, pid: int, seconds: float, counter: Streams | Browsers | None = None) -> Window:
    c0, b0, t0 = cpu_seconds(pid), counter.bytes if counter else 0, time.monotonic()
    time.sleep(seconds)
    c1, b1, t1 = cpu_seconds(pid), counter.bytes if counter else 0, time.monotonic()
    counted = not isinstance(counter, Browsers)
    return Window(name, 100 * (c1 - c0) / (t1 - t0), rss_mb(pid), (b1 - b0) / (t1 - t0) if counted else None)


def _start(config: Path, log: Path, url: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "-c", str(config)],
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the gateway did not come up; its log:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                break
        except OSError:
            time.sleep(0.2)
    time.sleep(WARMUP)
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_dashboard_bench(*, nodes: int = 250, pages: int = 10, seconds: float = 30.0, clients: str = "sse",
                        write_docs: bool = False) -> int:
    """Measure the three windows, print the table; with ``write_docs`` record it in docs/performance.md."""
    work = Path(tempfile.mkdtemp(prefix="streetedge-bench-dashboard-"))
    sims = Simulators(4, -(-nodes // 4))
    windows: list[Window] = []
    history_mb = 0.0
    try:
        with LocalBroker("mosquitto") as broker:
            http_port = free_port()
            plain = gateway_toml(work / "plain.toml", broker, sims, interval=1.0, concurrency=4, nodes=nodes,
                                 http_port=http_port)
            proc = _start(plain, work / "plain.log", f"http://127.0.0.1:{http_port}/health")
            try:
                windows.append(_window("dashboard off", proc.pid, seconds))
            finally:
                _stop(proc)
            config = gateway_toml(work / "gateway.toml", broker, sims, interval=1.0, concurrency=4, nodes=nodes,
                                  http_port=http_port)
            config.write_text(config.read_text() + commands_toml(work))
            login = enable_dashboard(config, work, port=free_port())
            proc = _start(config, work / "gateway.log", login.url + "login")
            try:
                windows.append(_window("no page open", proc.pid, seconds))
                viewers: Streams | Browsers
                if clients == "browser":
                    viewers = Browsers(login, pages)
                else:
                    viewers = Streams(login, pages)
                    viewers.start()
                try:
                    time.sleep(2.0)  # past the logins and the first whole states
                    windows.append(_window(f"{pages} {'browsers' if clients == 'browser' else 'event streams'}",
                                           proc.pid, seconds, viewers))
                finally:
                    viewers.close()
            finally:
                _stop(proc)
            history_mb = sum(p.stat().st_size for p in work.glob("dashboard.sqlite*")) / 1e6
    finally:
        sims.close()
        shutil.rmtree(work, ignore_errors=True)
    tick_ms, update_bytes = tick_cost(nodes, pages)
    text = _table(windows, nodes, seconds, history_mb) + (
        f"\nThe feed's work each second, measured alone in one process (`tick_cost`: {nodes} lamps whose every "
        f"poll moves three values, {pages} pages subscribed): {tick_ms:.1f} ms of CPU per tick, an update of "
        f"{update_bytes / 1000:.1f} kB encoded once for every page.\n\n" + history_cost(nodes))
    print(text)
    if write_docs:
        command = (f"streetedge bench dashboard --nodes {nodes} --pages {pages} --seconds {seconds:g} "
                   f"--clients {clients} --write-docs")
        record(f"bench-dashboard-{clients}", f"Dashboard: gateway cost with {pages} pages open ({clients})",
               command, text)
    return 0


def _table(windows: list[Window], nodes: int, seconds: float, history_mb: float) -> str:
    base = windows[0]
    rows = ["| gateway | CPU (% of one core) | resident memory (MB) | event streams (kB/s) |",
            "|---|---:|---:|---:|"]
    for w in windows:
        rows.append(f"| {w.name} | {w.cpu_percent:.1f} ({w.cpu_percent - base.cpu_percent:+.1f}) | "
                    f"{w.rss_mb:.1f} ({w.rss_mb - base.rss_mb:+.1f}) | {_kb(w.stream_bytes_per_s)} |")
    return (f"{nodes} lamps on Modbus TCP simulators, each polled every second; the real gateway "
            f"(`streetedge run`), Mosquitto; {seconds:g} s windows after a {WARMUP:g} s warm-up, one after "
            "the other on the same machine (differences against the gateway without the dashboard in "
            f"brackets). The history file after the run: {history_mb:.2f} MB. Load average at the end "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (other work shares the machine).\n\n"
            + "\n".join(rows) + "\n")


def _kb(per_second: float | None) -> str:
    return "not counted" if per_second is None else f"{per_second / 1000:.1f}"
