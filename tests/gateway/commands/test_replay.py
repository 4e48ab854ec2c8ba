"""The replay store forgets expired command ids while the gateway runs, not only at its next start."""

from __future__ import annotations

from pathlib import Path

from gateway.commands.replay import PURGE_EVERY, RETAIN, ReplayStore


def test_expired_ids_are_purged_by_later_claims_without_a_restart(tmp_path: Path) -> None:
    """Ids whose retention ended are gone after the next claim an hour on; younger ones stay answerable."""
    start = 1_800_000_000.0
    store = ReplayStore(tmp_path / "replay.sqlite", now=start)
    try:
        for i in range(100):
            store.claim(f"old-{i}", b"d" * 32, "ops", start + 60, start)
            store.finish(f"old-{i}", {"id": f"old-{i}", "status": "done"})
        first = start + 50 + RETAIN  # purges, but the old ids are still within their retention
        store.claim("recent", b"r" * 32, "ops", first + 60, first)
        expired = start + 61 + RETAIN
        store.claim("next", b"n" * 32, "ops", expired + 60, expired)
        assert len(store) == 102  # less than PURGE_EVERY since the last purge: not yet
        store.claim("last", b"l" * 32, "ops", expired + 60, first + PURGE_EVERY)
        assert len(store) == 3
        assert store.lookup("old-0") is None
        recent = store.lookup("recent")
        assert recent is not None and recent.digest == b"r" * 32
    finally:
        store.close()
