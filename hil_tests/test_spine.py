"""One street end to end: nodes -> gateway -> broker, and commands back down to the lamps."""

from __future__ import annotations

from typing import Any

import cbor2

from protocols import senml
from tools.mqtt_watch import MqttWatch, Seen
from tools.operator import Signer, build_command

ROOT = "streetedge/v1/hil-site/gw-hil"


def readings(msg: Seen) -> dict[str, Any]:
    """Resolved SenML records of a data message, by register name (base name stripped)."""
    pack = senml.from_labels(cbor2.loads(msg.payload))
    out: dict[str, Any] = {}
    for rec in senml.resolve(pack):
        name = rec["n"].rsplit(":", 1)[-1]
        out[name] = rec
    return out


def is_data(node: str) -> Any:
    return lambda m: m.topic == f"{ROOT}/data/{node}"


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


def power_after(watch: MqttWatch, node: str, mark: int, check: Any, within: float = 20.0) -> float:
    """Wait for a data message of ``node`` after ``mark`` whose power satisfies ``check``."""
    msg = watch.wait_for(lambda m: is_data(node)(m) and check(readings(m)["power"]["v"]), within=within, after=mark)
    value: float = readings(msg)["power"]["v"]
    return value


def test_every_node_publishes_senml_with_names_units_and_seq(bench, watch) -> None:
    """Each lamp's pack carries every register with its SenML unit, and its seq grows."""
    for node in bench.node_ids:
        first = readings(watch.wait_for(is_data(node)))
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
        later = readings(watch.wait_for(lambda m, node=node, s=first["seq"]["v"]:
                                        is_data(node)(m) and readings(m)["seq"]["v"] > s))
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
    mark = watch.mark()
    full = power_after(watch, node, mark, lambda p: p > 40.0)

    result = command(watch, operators.ops, {"id": "dim-20", "target": node, "action": "dim", "level": 20})
    assert result["status"] == "done", result
    assert result["confirmed"] == [node]
    mark = watch.mark()
    dimmed = power_after(watch, node, mark, lambda p: p < full * 0.5)
    assert dimmed > 1.0, "a dimmed lamp still draws power"
    if bench.virtual:
        until(lambda: bench.world(node)["power_w"] < full * 0.5)
        assert bench.world(other)["power_w"] > full * 0.8


def test_switch_off_cuts_power(bench, watch, until, operators) -> None:
    """Switching a lamp off opens its relay: no power drawn; switching on restores it."""
    node = bench.node_ids[1]
    assert command(watch, operators.ops,
                   {"id": "off-2", "target": node, "action": "switch", "on": False})["status"] == "done"
    power_after(watch, node, watch.mark(), lambda p: p < 1.0)
    if bench.virtual:
        until(lambda: bench.world(node)["relay"] is False)
    assert command(watch, operators.ops,
                   {"id": "on-2", "target": node, "action": "switch", "on": True})["status"] == "done"
    power_after(watch, node, watch.mark(), lambda p: p > 1.0)


def test_whole_street_command_reaches_every_lamp(bench, watch, until, operators) -> None:
    """'all' goes out as a broadcast, and every lamp confirms and dims."""
    result = command(watch, operators.ops, {"id": "street-30", "target": "all", "action": "dim", "level": 30})
    assert result["status"] == "done", result
    assert sorted(result["confirmed"]) == sorted(bench.node_ids)
    assert result["unconfirmed"] == []
    mark = watch.mark()
    for node in bench.node_ids:
        msg = watch.wait_for(lambda m, node=node: is_data(node)(m) and readings(m)["dim_level"]["v"] == 30, after=mark)
        assert readings(msg)["dim_level"]["v"] == 30
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
    mark = watch.mark()
    for node in rest:
        msg = watch.wait_for(is_data(node), after=mark)
        assert readings(msg)["dim_level"]["v"] == 100


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

    mark = watch.mark()
    for node in bench.node_ids:
        watch.wait_for(is_data(node), after=mark)
