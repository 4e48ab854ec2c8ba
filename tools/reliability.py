"""Trying to lose data: the gateway, a virtual street and a broker, with faults, checked from outside.

A :class:`Rig` runs the real parts: a virtual street of lamp nodes (the real
firmware on the MicroPython unix port, sampling every 100 ms), a Mosquitto
broker on a fixed port (restartable, with persistence so that the observer's
subscription survives a restart), the gateway as a process (``streetedge run``,
compact profile) and an independent paho subscriber with a persistent session.

What counts as produced: every ``(node, seq)`` the gateway committed to its
outbox. The rig adds a trigger to the outbox file before the gateway first
opens it, which copies each inserted ``(node, seq)`` into a table of its own in
the same transaction; the log is as durable as the records and knows nothing of
acknowledgements. At the end the nodes are stopped, the gateway drains (it is
restarted until its outbox is empty) and every logged ``(node, seq)`` must have
reached the subscriber, unless the disk budget dropped it; the dropped count the
gateway reports upstream must account for exactly the rest. Copies received
more than once are counted as duplicates.

The observer is :mod:`tools.reliability_observer`. The scenarios (:data:`SCENARIOS`) are used by
``hil_tests/test_reliability.py`` (reduced sizes in the default run, full ones under ``-m slow``) and by
``streetedge bench reliability``, which records the figures in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.delivery.outbox import Outbox
from tools.broker import LocalBroker, free_port
from tools.reliability_observer import EVENT, GATEWAY, SITE, Key, Observer
from tools.sim.street import VirtualStreet
from tools.street_config import gateway_toml

_LOG_SQL = (
    "CREATE TABLE IF NOT EXISTS produced (node TEXT NOT NULL, kind INTEGER NOT NULL, seq INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS log_produced AFTER INSERT ON records "
    "BEGIN INSERT INTO produced (node, kind, seq) VALUES (new.node, new.kind, new.seq); END",
)


@dataclass
class Figures:
    """What a scenario produced, delivered and lost."""

    scenario: str
    produced: int = 0
    delivered: int = 0
    lost: int = 0
    duplicates: int = 0
    dropped: int = 0
    dropped_reported: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    events: int = 0
    missing: list[Key] = field(default_factory=list)

    def row(self) -> str:
        """A line of the results table."""
        notes = ", ".join(f"{k} {v}" for k, v in self.notes.items())
        return (f"| {self.scenario} | {self.produced:,} ({self.events} events) | {self.delivered:,} | {self.lost} "
                f"| {self.duplicates:,} "
                f"| {self.dropped:,} ({self.dropped_reported:,} reported) | {notes} |")


class Rig:
    """The street, the broker, the gateway process and the observer, in ``work``.

    Args:
        work: a folder for everything (street, broker persistence, outbox, logs).
        nodes: lamp nodes on the street.
        noise: probability of a flipped bit per byte on the bus; ``drop``: of a lost byte.
        budget_mb: the outbox's disk budget.
        interval: poll interval of every node, seconds.
    """

    def __init__(
        self, work: Path, *, nodes: int = 4, noise: float = 0.0, drop: float = 0.0, budget_mb: float = 64.0,
        interval: float = 0.05, seed: int = 1,
    ) -> None:
        self.work = work
        self.rng = random.Random(seed)
        self.budget_mb = budget_mb
        self.interval = interval
        # The nodes' heap is not under test here (tests/firmware bound it at 128K): room to spare, so that
        # firmware work in progress cannot make a delivery test fail at boot.
        self.street = VirtualStreet(work / "street", nodes=nodes, noise=noise, drop=drop, seed=seed, heapsize="256K")
        self.port = free_port()
        self.spool = Path(tempfile.mkdtemp(prefix="streetedge-rel-broker-"))
        self.spool.chmod(0o777)  # Mosquitto drops root privileges before it writes its persistence file
        self.broker: LocalBroker | None = None
        self.outbox = work / "outbox.db"
        self.config = work / "gateway.toml"
        self.log = work / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.observer: Observer | None = None
        self.kills = 0

    # -- parts ----------------------------------------------------------------------------------------------------

    def start(self) -> Rig:
        """Street (nodes sampling every 100 ms), broker, outbox with its log trigger, observer, configuration."""
        for unit in self.street.nodes:
            flash = self.street.node(unit).flash
            flash.mkdir(parents=True, exist_ok=True)
            (flash / "config.json").write_text(json.dumps(
                {"unit": unit, "role": "lamp", "baud": self.street.baud, "sample_ms": 100}))
        manifest = self.street.start()
        for attempt in range(3):
            try:
                self.broker_up()
                break
            except RuntimeError:  # another process took the port since it was chosen
                if attempt == 2:
                    raise
                self.port = free_port()
        Outbox(self.outbox).close()  # the schema, so that the trigger has its table
        db = sqlite3.connect(self.outbox)
        for statement in _LOG_SQL:
            db.execute(statement)
        db.commit()
        db.close()
        self.observer = Observer(self.port)
        text = gateway_toml(manifest, broker_url=f"mqtt://127.0.0.1:{self.port}", site=SITE, gateway=GATEWAY,
                            interval=self.interval)
        text += (f'\n[http]\nenabled = false\n\n[delivery]\noutbox = "{self.outbox}"\nprofile = "compact"\n'
                 f"batch_interval = 0.5\ndrain_rate = 400.0\nbudget_mb = {self.budget_mb}\n")
        self.config.write_text(text)
        return self

    def stop(self) -> None:
        """Stop everything this rig started (by PID)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.observer is not None:
            self.observer.close()
        self.street.stop()
        if self.broker is not None:
            self.broker.stop()
        subprocess.run(["rm", "-rf", str(self.spool)], check=False)

    def broker_up(self) -> None:
        """Start Mosquitto on the rig's port, with persistence (subscriptions survive a restart)."""
        extra = f"persistence true\npersistence_location {self.spool}/\nautosave_interval 1\n"
        self.broker = LocalBroker("mosquitto", port=self.port, extra_config=extra).start()

    def broker_down(self) -> None:
        """Stop Mosquitto (SIGTERM: it saves its persistence file)."""
        assert self.broker is not None
        self.broker.stop()

    def gateway_up(self) -> None:
        """Start ``streetedge run`` on the rig's configuration."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tools.cli", "run", "-c", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"),
            )

    def gateway_kill(self) -> None:
        """SIGKILL the gateway: no goodbye, no flush."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.kills += 1

    def gateway_stop(self) -> int:
        """SIGTERM the gateway and wait for its clean exit; its exit status."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return -9

    def gateway_alive(self) -> bool:
        """Whether the gateway process runs."""
        return self.proc is not None and self.proc.poll() is None

    def stored(self) -> int:
        """Records committed to the outbox so far (read while the gateway is stopped, or from its log)."""
        db = sqlite3.connect(self.outbox, timeout=30)
        try:
            return int(db.execute("SELECT count(*) FROM produced").fetchone()[0])
        except sqlite3.OperationalError:  # the gateway holds its exclusive lock
            return -1
        finally:
            db.close()

    def wait_for_messages(self, count: int, within: float = 120.0) -> None:
        """Until the observer has ``count`` more messages than now."""
        assert self.observer is not None
        goal = self.observer.count() + count
        deadline = time.monotonic() + within
        while self.observer.count() < goal:
            if not self.gateway_alive():
                raise RuntimeError(f"the gateway died:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"fewer than {count} messages in {within} s:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the gateway's log."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- the end ------------------------------------------------------------------------------------------------

    def drain_and_check(self, scenario: str, *, rounds: int = 6, also_produced: set[Key] | None = None) -> Figures:
        """Stop the nodes, let the gateway empty its outbox (restarting it while anything is left), compare.

        ``also_produced``: records committed at some point that the file may no longer log (a power cut
        rolled them back); they count as produced too.
        """
        for unit in self.street.nodes:
            self.street.kill_node(unit)
        assert self.observer is not None
        left = -1
        for _ in range(rounds):
            if not self.gateway_alive():
                mark = self.observer.count()
                self.gateway_up()
                self._heard(mark)  # connected: its births arrived
            self._quiet(2.0)
            self.gateway_stop()
            with Outbox(self.outbox) as box:
                left = box.depth()[0]
                dropped = sum(box.dropped().values())
            if left == 0:
                break
        db = sqlite3.connect(self.outbox)
        produced = {(n, k, s) for n, k, s in db.execute("SELECT node, kind, seq FROM produced")}
        db.close()
        produced |= also_produced or set()
        time.sleep(1.0)  # the observer's last PUBLISH after the broker's PUBACK
        received, counters = self.observer.received()
        missing = sorted(produced - set(received))
        figures = Figures(
            scenario, produced=len(produced), delivered=len(produced & set(received)),
            # Every record that never arrived must be covered by the drop count. The converse need not
            # hold: a drop skips records in flight, so a dropped record that arrived anyway had been
            # published before without its PUBACK reaching the gateway (the broker went away).
            lost=max(0, len(missing) - dropped), duplicates=sum(received.values()) - len(received), dropped=dropped,
            dropped_reported=sum(counters.get("dropped", {}).values()) if counters else 0,
            events=sum(1 for _, kind, _ in produced if kind == EVENT), missing=missing[:50],
        )
        figures.notes["gateway kills"] = self.kills
        if dropped > len(missing):
            figures.notes["dropped, yet had arrived"] = dropped - len(missing)
        if left:
            figures.notes["left in outbox"] = left
        return figures

    def _heard(self, mark: int, within: float = 120.0) -> None:
        """Wait until the observer has more than ``mark`` messages."""
        assert self.observer is not None
        deadline = time.monotonic() + within
        while self.observer.count() <= mark and time.monotonic() < deadline:
            time.sleep(0.1)

    def _quiet(self, seconds: float, within: float = 180.0) -> None:
        """Wait until the observer heard nothing for ``seconds`` (the gateway has sent what it had)."""
        assert self.observer is not None
        deadline = time.monotonic() + within
        last, since = self.observer.count(), time.monotonic()
        while time.monotonic() - since < seconds and time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.observer.count()
            if now != last:
                last, since = now, time.monotonic()


# -- scenarios ------------------------------------------------------------------------------------------------------


def sigkill(rig: Rig, *, kills: int = 5, up: tuple[float, float] = (0.5, 4.0)) -> Figures:
    """SIGKILL the gateway ``kills`` times, each after a random time up (start-up included)."""
    rig.gateway_up()
    rig.wait_for_messages(3)
    for _ in range(kills):
        time.sleep(rig.rng.uniform(*up))
        rig.gateway_kill()
        rig.gateway_up()
    time.sleep(rig.rng.uniform(*up))
    return rig.drain_and_check(f"SIGKILL x{kills}")


def broker_down(rig: Rig, *, seconds: float = 15.0) -> Figures:
    """Stop the broker for ``seconds`` while the gateway polls on, then bring it back."""
    rig.gateway_up()
    rig.wait_for_messages(3)
    rig.broker_down()
    time.sleep(seconds)
    rig.broker_up()
    rig.wait_for_messages(3)
    figures = rig.drain_and_check(f"broker down {seconds:.0f} s")
    figures.notes["broker down s"] = seconds
    return figures


def bus_noise(rig: Rig, *, seconds: float = 20.0) -> Figures:
    """Poll a noisy bus (corrupted and dropped bytes) for ``seconds``."""
    rig.gateway_up()
    rig.wait_for_messages(3)
    time.sleep(seconds)
    stats = rig.street.bus_stats()
    figures = rig.drain_and_check(f"bus noise ({rig.street.noise:g} flip, {rig.street.drop:g} drop per byte)")
    figures.notes["bytes corrupted"] = stats.get("corrupted", 0)
    figures.notes["bytes lost"] = stats.get("lost", 0)
    return figures


def node_kills(rig: Rig, *, cuts: int = 6, seconds: float = 20.0) -> Figures:
    """Cut the power of random nodes (SIGKILL) and restore it, ``cuts`` times over ``seconds``."""
    rig.gateway_up()
    rig.wait_for_messages(3)
    units = list(rig.street.nodes)
    for _ in range(cuts):
        time.sleep(seconds / cuts)
        unit = rig.rng.choice(units)
        rig.street.kill_node(unit)
        time.sleep(rig.rng.uniform(0.2, 1.5))
        rig.street.start_node(unit)
    figures = rig.drain_and_check(f"node power cuts x{cuts}")
    figures.notes["node restarts"] = cuts
    return figures


def disk_budget(rig: Rig, *, seconds: float = 15.0) -> Figures:
    """Broker down long enough for the outbox to overflow its (small) budget; then back."""
    rig.gateway_up()
    rig.wait_for_messages(3)
    rig.broker_down()
    time.sleep(seconds)
    alive = rig.gateway_alive()
    rig.broker_up()
    rig.wait_for_messages(3)
    figures = rig.drain_and_check(f"disk budget {rig.budget_mb * 1024:.0f} KiB exhausted")
    figures.notes["gateway alive when full"] = alive
    return figures


Scenario = Callable[..., Figures]
SCENARIOS: dict[str, tuple[Scenario, dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    # name: (function, rig options, default-run sizes, full sizes)
    "sigkill": (sigkill, {}, {"kills": 5, "up": (0.5, 2.5)}, {"kills": 20}),
    "broker": (broker_down, {}, {"seconds": 10.0}, {"seconds": 90.0}),
    "noise": (bus_noise, {"noise": 0.0005, "drop": 0.0002}, {"seconds": 10.0}, {"seconds": 60.0}),
    "nodes": (node_kills, {}, {"cuts": 3, "seconds": 9.0}, {"cuts": 12, "seconds": 60.0}),
    "budget": (disk_budget, {"budget_mb": 24 / 1024}, {"seconds": 10.0}, {"seconds": 40.0}),
}


def run_scenario(name: str, work: Path, *, full: bool = False, seed: int = 1) -> Figures:
    """Build a rig for scenario ``name`` in ``work``, run it (default or full sizes), take it down."""
    fn, options, small, big = SCENARIOS[name]
    rig = Rig(work, seed=seed, **options).start()
    try:
        return fn(rig, **(big if full else small))
    finally:
        rig.stop()
