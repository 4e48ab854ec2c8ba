"""The live feed and the node view: states, alarms from the roles' status bits, events, slow browsers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gateway.contracts import role_constants
from gateway.dashboard.feed import BACKLOG, Feed
from gateway.dashboard.view import alarm_bits, node_state
from gateway.service.config import Config

LAMP = role_constants("lamp")
METER = role_constants("meter")


def test_alarm_bits_come_from_each_roles_alarm_mask() -> None:
    lamp = dict((name, bit) for bit, name in alarm_bits("lamp"))
    assert lamp["supply_loss"] == LAMP["STATUS_SUPPLY_LOSS"] and "lamp_on" not in lamp
    assert {name for _, name in alarm_bits("meter")} >= {"leak", "burst", "backflow"}
    assert "flowing" not in {name for _, name in alarm_bits("meter")}
    assert {name for _, name in alarm_bits("env")} == {"climate_fault", "pm_fault", "noise_fault"}


def test_a_nodes_state_word(make_config: Callable[..., Config], kit: Any) -> None:
    stats = kit.stats_for(make_config())
    node = stats.nodes["lamp-1"]
    assert node_state(node) == "unknown"
    node.online = True
    node.values.update(status=LAMP["STATUS_LAMP_ON"], control=LAMP["CONTROL_PROGRAM"], node_status=0)
    assert node_state(node) == "online"
    node.values["control"] = LAMP["CONTROL_AUTONOMOUS"]
    assert node_state(node) == "autonomous"
    node.values["status"] |= LAMP["STATUS_DIMMING_FAILURE"]
    assert node_state(node) == "alarm"
    node.values["node_status"] = role_constants("common")["NODE_SAFE_CRASH_LOOP"]
    assert node_state(node) == "safe_mode"
    node.online = False
    assert node_state(node) == "offline"


def test_events_for_alarms_raised_and_cleared_and_links_lost(make_config: Callable[..., Config], kit: Any) -> None:
    config = make_config()
    stats = kit.stats_for(config)
    for node in stats.nodes.values():
        node.online, node.values["status"] = True, LAMP["STATUS_LAMP_ON"]
    feed = Feed(config, stats, clock=lambda: 1000.0)
    feed.tick()
    assert not feed.events
    stats.nodes["lamp-2"].values["status"] |= LAMP["STATUS_SUPPLY_LOSS"]
    feed.tick()
    stats.nodes["lamp-2"].values["status"] = LAMP["STATUS_LAMP_ON"]
    stats.nodes["lamp-3"].online, stats.nodes["lamp-3"].last_error = False, "unit 3 on bus0: no answer"
    feed.tick()
    assert [(e["kind"], e.get("node"), e.get("alarm"), e.get("raised"), e.get("online")) for e in feed.events] == [
        ("alarm", "lamp-2", "supply_loss", True, None),
        ("alarm", "lamp-2", "supply_loss", False, None),
        ("link", "lamp-3", None, None, False),
    ]
    assert feed.events[-1]["error"] == "unit 3 on bus0: no answer"


def test_updates_carry_only_what_changed(make_config: Callable[..., Config], kit: Any) -> None:
    config = make_config()
    stats = kit.stats_for(config)
    feed = Feed(config, stats)
    queue = feed.subscribe()
    kind, data = queue.get_nowait()
    assert kind == "state" and len(json.loads(data)["nodes"]) == 3
    feed.tick()
    queue.get_nowait()
    stats.nodes["lamp-1"].values.update(power=42.0, energy=7)
    feed.tick()
    stats.nodes["lamp-1"].values["power"] = 43.0
    stats.nodes["lamp-3"].online = False
    feed.tick()
    updates = [json.loads(data)["nodes"] for kind, data in (queue.get_nowait() for _ in range(queue.qsize()))
               if kind == "update"]
    assert updates == [
        [{"id": "lamp-1", "values": {"power": 42.0, "energy": 7}}],
        [{"id": "lamp-1", "values": {"power": 43.0}}, {"id": "lamp-3", "state": "offline"}],
    ]


def test_a_browser_that_falls_behind_is_dropped(make_config: Callable[..., Config], kit: Any) -> None:
    config = make_config()
    feed = Feed(config, kit.stats_for(config))
    slow = feed.subscribe()
    for i in range(BACKLOG + 1):
        feed.add_event("result", id=f"c{i}", status="done", detail="")
    assert feed.subscribers == 0
    messages = [slow.get_nowait() for _ in range(slow.qsize())]
    assert messages[-1] is None, "told to go (its browser reconnects and gets the whole state)"


def test_command_results_become_events(make_config: Callable[..., Config], kit: Any) -> None:
    config = make_config()
    stats = kit.stats_for(config)
    feed = Feed(config, stats)
    for i in range(3):
        stats.commands["done"] += 1
        stats.recent_results.append({"id": f"c{i}", "status": "done", "detail": "dim 40% confirmed"})
    feed.tick()
    assert [e["id"] for e in feed.events if e["kind"] == "result"] == ["c0", "c1", "c2"]
    feed.tick()
    assert len(feed.events) == 3, "each result once"
