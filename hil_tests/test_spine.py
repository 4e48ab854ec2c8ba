"""One street end to end: nodes -> gateway -> broker, and commands back down to the lamps."""

from __future__ import annotations

import time
from typing import Any

import cbor2

from tools.mqtt_watch import MqttWatch, Poll, Polls
from tools.operator import Signer, build_command

ROOT = "streetedge/v1/hil-site/gw-hil"


def next_poll(watch: MqttWatch, node: str, ok: Any = lambda p: True, within: float = 15.0) -> Poll:
    """The node's resolved SenML records by register name, from its first poll taken from now on that ``ok``
    accepts (whichever data profile the gateway publishes)."""
    return Polls(watch, ROOT).next(node, ok, within=within)


def command(watch: MqttWatch, signer: Signer, cmd: dict[str, Any], within: float = 20.0) -> dict[str, Any]:
    """Sign and publish a command as an operator would and return its result.

    ``cmd`` is written as ``{"id", "target", "action", **params}``; it is sent as a signed envelope.
    """
    params = {k: v for k, v in cmd.items() if k not in ("id", "target", "action")}
    mark = watch.mark()
    watch.publish(f"{ROOT}/cmd", signer.sign(build_command(cmd["target"], cmd["action"], params, cmd["id"])))
    msg = watch.wait_for(
        lambda m: m.topic == f"{ROOT}/result" and cbor2.loads(m.payload).get("id") == cmd.get("id"),
        within=within, after=mark,
    )
    result: dict[str, Any] = cbor2.loads(msg.payload)
    return result


def power_after(watch: MqttWatch, node: str, check: Any, within: float = 20.0) -> float:
    """Wait for a poll of ``node`` from now on whose power satisfies ``check``."""
    value: float = next_poll(watch, node, lambda p: check(p["power"]["v"]), within=within)["power"]["v"]
    return value


def test_every_node_publishes_every_register_with_names_units_and_seq(bench, watch) -> None:
    """Each lamp's poll, read back as SenML, carries every register with its SenML unit, and its seq grows."""
    for node in bench.node_ids:
        first = Polls(watch, ROOT).wait(node)
        assert first["power"]["u"] == "W"
        assert first["voltage"]["u"] == "V"
        assert first["current"]["u"] == "A"
        assert first["energy"]["u"] == "Wh"
        assert first["temperature"]["u"] == "Cel"
        assert first["dim_level"]["u"] == "%"
        assert isinstance(first["relay"]["vb"], bool)
        assert 200.0 < first["voltage"]["v"] < 260.0
        assert "t" in first["power"], "records carry the poll time"
        assert first["power"]["n"] == f"urn:dev:streetedge:hil-site:{node}:power"
        later = Polls(watch, ROOT).wait(node, lambda p, s=first["seq"]["v"]: p["seq"]["v"] > s)
        assert later["seq"]["v"] > first["seq"]["v"]


def test_gateway_state_is_retained_online(broker, gateway) -> None:
    """A late subscriber learns at once that the gateway is online (retained state)."""
    with MqttWatch(broker.host, broker.port, f"{ROOT}/state") as late:
        msg = late.wait_for(lambda m: True, within=10)
    assert msg.retain
    assert cbor2.loads(msg.payload)["online"] is True


def test_dim_command_changes_the_lamps_power_draw(bench, watch, until, operators) -> None:
    """Dimming one lamp is confirmed, and its measured power (the physics) follows; others stay."""
    node, other = bench.node_ids[0], bench.node_ids[-1]
    assert command(watch, operators.ops,
                   {"id": "full-1", "target": "all", "action": "dim", "level": 100})["status"] == "done"
    assert command(watch, operators.ops,
                   {"id": "on-1", "target": "all", "action": "switch", "on": True})["status"] == "done"
    full = power_after(watch, node, lambda p: p > 40.0)

    result = command(watch, operators.ops, {"id": "dim-20", "target": node, "action": "dim", "level": 20})
    assert result["status"] == "done", result
    assert result["confirmed"] == [node]
    dimmed = power_after(watch, node, lambda p: p < full * 0.5)
    assert dimmed > 1.0, "a dimmed lamp still draws power"
    if bench.virtual:
        until(lambda: bench.world(node)["power_w"] < full * 0.5)
        assert bench.world(other)["power_w"] > full * 0.8


def test_switch_off_cuts_power(bench, watch, until, operators) -> None:
    """Switching a lamp off opens its relay: no power drawn; switching on restores it."""
    node = bench.node_ids[1]
    assert command(watch, operators.ops,
                   {"id": "off-2", "target": node, "action": "switch", "on": False})["status"] == "done"
    power_after(watch, node, lambda p: p < 1.0)
    if bench.virtual:
        until(lambda: bench.world(node)["relay"] is False)
    assert command(watch, operators.ops,
                   {"id": "on-2", "target": node, "action": "switch", "on": True})["status"] == "done"
    power_after(watch, node, lambda p: p > 1.0)


def test_whole_street_command_reaches_every_lamp(bench, watch, until, operators) -> None:
    """'all' goes out as a broadcast, and every lamp confirms and dims."""
    result = command(watch, operators.ops, {"id": "street-30", "target": "all", "action": "dim", "level": 30})
    assert result["status"] == "done", result
    assert sorted(result["confirmed"]) == sorted(bench.node_ids)
    assert result["unconfirmed"] == []
    polls, mark, since = Polls(watch, ROOT), watch.mark(), time.time()
    for node in bench.node_ids:
        poll = polls.wait(node, lambda p: p["dim_level"]["v"] == 30, after=mark, since=since)
        assert poll["dim_level"]["v"] == 30
    if bench.virtual:
        until(lambda: all(abs(bench.world(n)["light"] - 0.30) < 0.01 for n in bench.node_ids))


def test_group_command_reaches_its_members_only(bench, watch, operators) -> None:
    """A configured group is commanded; lamps outside it keep their level."""
    assert command(watch, operators.ops,
                   {"id": "g-full", "target": "all", "action": "dim", "level": 100})["status"] == "done"
    half = bench.node_ids[: len(bench.node_ids) // 2]
    rest = bench.node_ids[len(bench.node_ids) // 2 :]
    result = command(watch, operators.ops, {"id": "g-60", "target": "group:half", "action": "dim", "level": 60})
    assert result["status"] == "done", result
    assert sorted(result["confirmed"]) == sorted(half)
    polls, mark, since = Polls(watch, ROOT), watch.mark(), time.time()
    for node in rest:
        assert polls.wait(node, after=mark, since=since)["dim_level"]["v"] == 100


def test_garbage_and_unknown_targets_are_refused_and_the_gateway_goes_on(bench, watch, operators) -> None:
    """Garbage gets 'rejected/malformed', an unknown node 'rejected/unknown_target'; data keeps flowing."""
    mark = watch.mark()
    watch.publish(f"{ROOT}/cmd", b"\xff\x00garbage")
    msg = watch.wait_for(lambda m: m.topic == f"{ROOT}/result", after=mark)
    result = cbor2.loads(msg.payload)
    assert result["status"] == "rejected"
    assert result["reason"] == "malformed"
    assert result["id"] is None

    result = command(watch, operators.ops, {"id": "ghost", "target": "lamp-999", "action": "dim", "level": 10})
    assert result["status"] == "rejected"
    assert result["reason"] == "unknown_target"

    result = command(watch, operators.ops,
                     {"id": "bad-level", "target": bench.node_ids[0], "action": "dim", "level": 101})
    assert result["status"] == "rejected"
    assert result["reason"] == "bad_parameters"

    polls, mark, since = Polls(watch, ROOT), watch.mark(), time.time()
    for node in bench.node_ids:
        polls.wait(node, after=mark, since=since)
