"""The bounded history: what it keeps, for how long, and the series the plots get."""

from __future__ import annotations

from pathlib import Path

from gateway.dashboard.history import ACTIONS_KEPT, MAX_POINTS, History


def test_samples_older_than_the_window_are_deleted(tmp_path: Path) -> None:
    history = History(str(tmp_path / "h.sqlite"), hours=1.0)
    for minute in range(120):  # two hours, one sampling a minute, two lamps
        history.add(minute * 60.0, [("lamp-1", "lamp", "power", 10.0), ("lamp-2", "lamp", "power", 20.0)])
    assert history.rows() == 2 * 61, "the last hour (both ends included), nothing older"
    street = history.series("power", role="lamp", since=0)
    assert street[0] == (59 * 60.0, 30.0) and street[-1] == (119 * 60.0, 30.0), "the street's total per sampling"
    assert history.series("power", node="lamp-2", since=0)[-1] == (119 * 60.0, 20.0)
    history.close()
    again = History(str(tmp_path / "h.sqlite"), hours=1.0)
    assert again.rows() == 2 * 61, "kept across a restart"
    again.close()


def test_long_series_are_thinned_for_the_plot() -> None:
    history = History("", hours=24.0)
    for i in range(MAX_POINTS * 3):
        history.add(float(i), [("m", "meter", "flow", float(i % 3))])
    points = history.series("flow", node="m", since=0)
    assert len(points) == MAX_POINTS
    assert all(value == 1.0 for _, value in points), "each point the mean of its bucket"


def test_the_page_commands_are_kept_newest_first_and_bounded() -> None:
    history = History("", hours=1.0)
    for i in range(ACTIONS_KEPT + 5):
        history.add_action({"ts": float(i), "user": "ana", "id": f"c{i}", "target": "all", "action": "dim",
                            "params": "{}", "status": "done", "detail": ""})
    assert [a["id"] for a in history.actions(2)] == [f"c{ACTIONS_KEPT + 4}", f"c{ACTIONS_KEPT + 3}"]
    assert len(history.actions(ACTIONS_KEPT * 2)) == ACTIONS_KEPT
