"""Power cuts of the gateway: its outbox on a filesystem that forgets what was not fsynced.

The rig of :mod:`tools.reliability` (virtual street, Mosquitto, ``streetedge
run``, an independent paho observer), with the outbox on
:mod:`tools.sim.power_cut_fs`. Each cut: the gateway is SIGKILLed at a random
moment under load (every write it made has then reached the filesystem), the
power is cut (what was not fsynced is lost, the newest unsynced write torn),
the filesystem comes back on what survived and the gateway restarts on it.

What counts as *committed locally*: at each cut, before the power goes, the
filesystem copies the files as the gateway saw them (the page cache: what a
process crash would have left); every ``(node, kind, seq)`` logged there by the
rig's trigger had its transaction committed. Their union over all cuts, plus
the final file's log, is what must reach the observer. A cut that rolled back
records is classified by what was unsynced on the WAL at that moment: with
``synchronous = FULL`` the WAL is fsynced before COMMIT returns, so unsynced
WAL data means a commit in flight, whose records the gateway never saw stored
(never published, never acknowledged to anyone). Anything else rolled back and
never delivered is a loss of acknowledged data.

Also checked from the observer: a ``(node, kind, seq)`` must never arrive with
different values (a seq reused for other data), and the session numbers of the
gateway's births must only grow (a rolled-back session counter would reuse one).
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from tools.reliability import Figures, Rig
from tools.reliability_observer import Key
from tools.sim.power_cut_mount import PowerCutMount


class PowerCutRig(Rig):
    """A :class:`~tools.reliability.Rig` whose outbox lives on a power-cut filesystem.

    Args:
        synchronous: the gateway's ``[delivery] synchronous``.
        tear: tear the newest unsynced write at each cut.
    """

    def __init__(self, work: Path, *, synchronous: str, tear: bool = True, seed: int = 1, **options: Any) -> None:
        super().__init__(work, seed=seed, **options)
        self.synchronous = synchronous
        self.tear = tear
        self.disk = work / "disk"
        self.mount = work / "mnt"
        self.outbox = self.mount / "outbox.db"
        self.fs = PowerCutMount(self.disk, self.mount, seed=seed)

    def start(self) -> PowerCutRig:
        """Mount, then the rig's parts; the configuration names the synchronous mode."""
        self.fs.start()
        try:
            super().start()
        except BaseException:
            self.stop()
            raise
        self.config.write_text(self.config.read_text() + f'synchronous = "{self.synchronous}"\n')
        return self

    def stop(self) -> None:
        """Stop the rig, then unmount (orderly: synced)."""
        try:
            super().stop()
        finally:
            self.fs.stop()

    def power_cut(self, image: Path) -> dict[str, Any]:
        """SIGKILL the gateway, cut the power (``image`` gets the page-cache view), power on again."""
        self.gateway_kill()
        report = self.fs.cut(tear=self.tear, image=image)
        self.fs = PowerCutMount(self.disk, self.mount, seed=self.rng.randrange(1 << 30)).start()
        return report


def logged(path: Path) -> set[Key]:
    """The ``(node, kind, seq)`` the rig's trigger logged in an outbox file (recovering its WAL)."""
    if not path.exists():
        return set()
    db = sqlite3.connect(path, timeout=30)
    try:
        return {(n, k, s) for n, k, s in db.execute("SELECT node, kind, seq FROM produced")}
    except sqlite3.OperationalError:  # the schema was not there yet
        return set()
    finally:
        db.close()


def power_cuts(rig: PowerCutRig, *, cuts: int = 5, up: tuple[float, float] = (0.5, 4.0)) -> Figures:
    """Cut the gateway's power ``cuts`` times, each after a random time up (start-up included); then drain."""
    rig.gateway_up()
    rig.wait_for_messages(3)
    committed: set[Key] = set()
    in_flight: set[Key] = set()  # rolled back while a commit was in flight on the WAL
    acknowledged: set[Key] = set()  # rolled back with no commit in flight: stored and acknowledged, then lost
    rolled_back = flights = torn = 0
    images = rig.work / "images"
    for i in range(cuts):
        time.sleep(rig.rng.uniform(*up))
        report = rig.power_cut(images / str(i))
        before = logged(images / str(i) / "outbox.db")
        after = logged(rig.outbox)
        shutil.rmtree(images / str(i), ignore_errors=True)
        gone = before - after
        committed |= before
        rolled_back += len(gone)
        flight = bool(report["unsynced"].get("outbox.db-wal"))
        flights += flight
        torn += bool(report["torn_sectors"] and report["torn_sectors"][0])
        (in_flight if flight and rig.synchronous == "FULL" else acknowledged).update(gone)
        rig.gateway_up()
    time.sleep(rig.rng.uniform(*up))
    figures = rig.drain_and_check(f"power cuts x{cuts}, synchronous {rig.synchronous}", also_produced=committed)
    assert rig.observer is not None
    copies: dict[Key, set[tuple[Any, ...]]] = {}
    for key, values in rig.observer.records():
        copies.setdefault(key, set()).add(values)
    missing = set(figures.missing)
    sessions = rig.observer.sessions
    figures.notes.update({
        "cuts": cuts,
        "WAL unsynced at the cut": flights,
        "torn writes": torn,
        "rolled back": rolled_back,
        "lost, commit in flight": len(missing & in_flight),
        "lost, acknowledged": figures.lost - len(missing & in_flight),
        "seqs with different data": sum(1 for v in copies.values() if len(v) > 1),
        "sessions reused": sum(1 for a, b in itertools.pairwise(sessions) if b <= a),
    })
    return figures


def run_power_loss(
    work: Path, *, synchronous: str = "FULL", cuts: int | None = None, full: bool = False, seed: int = 1
) -> Figures:
    """Build a power-cut rig in ``work``, cut ``cuts`` times (3, or 25 at full size), take it down."""
    rig = PowerCutRig(work, synchronous=synchronous, seed=seed).start()
    try:
        if cuts is None:
            cuts = 25 if full else 3
        return power_cuts(rig, cuts=cuts, up=(0.5, 4.0) if full else (0.5, 2.5))
    finally:
        rig.stop()


def check_power_loss(figures: Figures, *, strict: bool) -> None:
    """Raise AssertionError if the run shows a broken promise; ``strict``: FULL's (nothing acknowledged lost)."""
    notes = figures.notes
    assert figures.produced > 0, "nothing was produced: the run tested nothing"
    assert notes.get("left in outbox", 0) == 0, "the outbox did not drain"
    assert notes["seqs with different data"] == 0, "a (node, seq) arrived with different values"
    if strict:
        assert notes["lost, acknowledged"] == 0, f"acknowledged records lost: {figures.missing[:10]}"
        assert notes["sessions reused"] == 0, "a session number was used twice"
