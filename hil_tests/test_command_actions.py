"""Every command action against Mosquitto, the gateway daemon and the real firmware: done, and its effect seen.

Each action is sent signed, answered ``done`` only after the gateway read the
node's state back, and then checked independently: in the node's data
messages (an MQTT observer of its own), and on the virtual street also in the
physical lamp (``world.json``) and the node's flash. Each action also gets a
command with bad parameters, which is refused as ``bad_parameters`` and leaves
the lamp as it was.

The tests run before ``test_command_security`` and leave the street as they
found it: gateway control, the node clocks synced, units as configured.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cbor2
import pytest

from tools.mqtt_watch import MqttWatch, Poll, Polls
from tools.operator import Signer, build_command

ROOT = "streetedge/v1/hil-site/gw-hil"
STEADY = [[0, 0, 20]]  # one FIXED point at midnight: 20 % all day and night
STEADY_LEVEL = 20


def send(watch: MqttWatch, signer: Signer, target: str, action: str, params: dict[str, Any] | None, cid: str,
         within: float = 60.0) -> dict[str, Any]:
    """Sign and publish one command; return the result carrying ``cid``."""
    mark = watch.mark()
    watch.publish(f"{ROOT}/cmd", signer.sign(build_command(target, action, params, cid, lifetime=600)))
    msg = watch.wait_for(
        lambda m: m.topic == f"{ROOT}/result" and cbor2.loads(m.payload).get("id") == cid, within=within, after=mark
    )
    result: dict[str, Any] = cbor2.loads(msg.payload)
    return result


def done(result: dict[str, Any]) -> dict[str, Any]:
    """Assert the result is done; return it."""
    assert result["status"] == "done", result
    return result


def refused(result: dict[str, Any], needle: str) -> None:
    """Assert a bad_parameters refusal whose detail says ``needle``."""
    assert (result["status"], result.get("reason")) == ("rejected", "bad_parameters"), result
    assert needle in result["detail"], result["detail"]


def data(watch: MqttWatch, node: str, ok: Callable[[dict[str, Any]], bool] = lambda v: True,
         within: float = 30.0) -> dict[str, Any]:
    """The node's registers (by name) from its first poll taken from now on for which ``ok`` holds."""

    def values(poll: Poll) -> dict[str, Any]:
        return {name: r.get("v", r.get("vb")) for name, r in poll.items()}

    return values(Polls(watch, ROOT).next(node, lambda p: ok(values(p)), within=within))


def unit_of(bench: Any, node: str) -> int:
    return int(next(n["unit"] for n in bench.manifest["nodes"] if n["id"] == node))


def control(bench: Any, node: str, **values: Any) -> None:
    """Steer the node's virtual world (``control.json``: clock speed, lux ...)."""
    (bench.street.node(unit_of(bench, node)).flash / "control.json").write_text(json.dumps(values))


class ChipReset:
    """Plays the ESP32's reset on the virtual street: a node process that exits (``reset()``) is started again."""

    def __init__(self, street: Any, unit: int) -> None:
        self.street = street
        self.unit = unit
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        node = self.street.node(self.unit)
        while not self._stop.is_set():
            if not node.alive():
                self.street.start_node(self.unit, wait=False)
                self.restarts += 1
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(autouse=True)
def polling(bench, watch) -> None:
    """The gateway is up and polls every node (so it also listens for commands)."""
    for node in bench.node_ids:
        data(watch, node, within=60)


@pytest.fixture
def synced(bench, watch, operators) -> Iterator[None]:
    """Every node's clock set by the gateway (the program needs it); set again afterwards."""
    done(send(watch, operators.ops, "all", "time_sync", None, f"act-sync-{time.monotonic_ns()}"))
    yield
    done(send(watch, operators.ops, "all", "time_sync", None, f"act-resync-{time.monotonic_ns()}"))


def test_time_sync_sets_every_clock_and_clears_the_unsynced_flag(bench, watch, operators) -> None:
    """time_sync on all: one broadcast, each node confirmed; the clock and node_status in the data agree."""
    result = done(send(watch, operators.ops, "all", "time_sync", None, "act-time"))
    assert "broadcast on bus0" in result["detail"] and result["confirmed"] == bench.node_ids
    for node in bench.node_ids:
        values = data(watch, node)
        assert abs(values["clock"] - time.time()) < 5, values["clock"]
        assert int(values["node_status"]) & 1 == 0
    refused(send(watch, operators.ops, "all", "time_sync", {"at": 5}, "act-time-bad"), "unexpected 'at'")


def test_schedule_and_override_drive_the_lamp_and_expire_back(bench, watch, operators, synced, until) -> None:
    """Program control with a stored schedule; an override takes the lamp, expires, and the program is back."""
    node = bench.node_ids[2]
    ops = operators.ops
    done(send(watch, ops, node, "set_schedule", {"programs": {"0": STEADY}, "calendar": {"default": 0}}, "act-s1"))
    if bench.virtual:
        stored = json.loads((bench.street.node(unit_of(bench, node)).flash / "lamp.json").read_text())
        assert stored["programs"][0] == STEADY and stored["calendar"][0] == 0
    done(send(watch, ops, node, "set_config", {"mode": 1}, "act-mode1"))
    data(watch, node, lambda v: v["dim_level"] == STEADY_LEVEL and v["control"] == 1)
    try:
        # Bad parameters change nothing.
        refused(send(watch, ops, node, "override", {"level": 80, "minutes": 0}, "act-ov-bad"), "minutes 0")
        refused(send(watch, ops, node, "set_schedule", {"programs": {"1": [[0, 1500, 50]]}}, "act-s-bad"),
                "program 1 point 0: FIXED time 1500")
        refused(send(watch, ops, node, "set_schedule", {"calendar": {"default": 7}}, "act-s-bad2"),
                "names program 7, which the node does not store")
        refused(send(watch, ops, node, "clear_override", {"level": 1}, "act-clr-bad"), "unexpected 'level'")
        assert data(watch, node)["dim_level"] == STEADY_LEVEL

        # An override for a minute: the lamp follows; at 30x clock speed the minute is over in 2 s.
        done(send(watch, ops, node, "override", {"level": 80, "minutes": 1}, "act-ov"))
        values = data(watch, node, lambda v: v["level_source"] == 1)
        assert (values["dim_level"], values["override_minutes"]) == (80, 1)
        if bench.virtual:
            until(lambda: abs(bench.world(node)["light"] - 0.8) < 0.01)
            control(bench, node, speed=30)
            try:
                data(watch, node, lambda v: v["dim_level"] == STEADY_LEVEL and v["level_source"] == 0, within=60)
                until(lambda: abs(bench.world(node)["light"] - STEADY_LEVEL / 100) < 0.01)
            finally:
                control(bench, node, speed=1)

        # An override cleared before its time.
        done(send(watch, ops, node, "override", {"level": 60, "minutes": 30}, "act-ov2"))
        data(watch, node, lambda v: v["dim_level"] == 60)
        done(send(watch, ops, node, "clear_override", None, "act-clr"))
        values = data(watch, node, lambda v: v["dim_level"] == STEADY_LEVEL)
        assert values["override_minutes"] == 0
    finally:
        done(send(watch, ops, node, "set_config", {"mode": 0}, "act-mode0"))


def test_override_of_a_lamp_the_gateway_drives_is_not_done(bench, watch, operators) -> None:
    """In gateway control an override cannot show: the result says so instead of claiming done."""
    node = bench.node_ids[1]
    done(send(watch, operators.ops, node, "dim", {"level": 55}, "act-gw-dim"))
    result = send(watch, operators.ops, node, "override", {"level": 10, "minutes": 5}, "act-gw-ov")
    assert (result["status"], result["reason"]) == ("failed", "unconfirmed"), result
    assert "the gateway drives this lamp" in result["detail"]
    assert data(watch, node)["dim_level"] == 55
    done(send(watch, operators.ops, node, "clear_override", None, "act-gw-clr"))


def test_set_config_writes_settings_and_refuses_what_is_not_one(bench, watch, operators) -> None:
    """Settings as the register map scales them, read back; out of range or not a setting: refused, unchanged."""
    node = bench.node_ids[0]
    before = data(watch, node)
    result = done(send(watch, operators.ops, "group:half", "set_config",
                       {"latitude": 52.370216, "longitude": 4.895168, "rated_power": 75}, "act-cfg"))
    assert "broadcast" not in result["detail"]  # half the bus: node by node
    values = data(watch, node)
    assert (values["latitude"], values["longitude"], values["rated_power"]) == (52.370216, 4.895168, 75)
    refused(send(watch, operators.ops, node, "set_config", {"latitude": 95}, "act-cfg-bad"), "latitude: 95")
    refused(send(watch, operators.ops, node, "set_config", {"dim_level": 5}, "act-cfg-bad2"), "its action is dim")
    refused(send(watch, operators.ops, node, "set_config", {"photo_on": 50, "photo_off": 20}, "act-cfg-bad3"),
            "photocell: need 0 <= on < off")
    assert data(watch, node)["latitude"] == 52.370216
    done(send(watch, operators.ops, "group:half", "set_config",
              {"latitude": before["latitude"], "longitude": before["longitude"],
               "rated_power": before["rated_power"]}, "act-cfg-back"))


def test_reboot_is_confirmed_by_the_boot_counter_and_the_clock_is_set_again(bench, watch, operators) -> None:
    """The node reboots (boots + 1, uptime from 0, boot reason 'command'), answers again, its clock is set."""
    node = bench.node_ids[3]
    first = data(watch, node)
    refused(send(watch, operators.ops, node, "reboot", {"within": 5}, "act-boot-bad"), "within 5 is outside")
    before = data(watch, node)
    assert before["boots"] == first["boots"] and before["uptime"] >= first["uptime"]  # the refusal rebooted nothing
    reset = ChipReset(bench.street, unit_of(bench, node)) if bench.virtual else None
    try:
        result = done(send(watch, operators.ops, node, "reboot", None, "act-boot", within=180))
    finally:
        if reset is not None:
            reset.stop()
    assert result["confirmed"] == [node]
    if reset is not None:
        assert reset.restarts == 1
    after = data(watch, node)
    assert after["boots"] == before["boots"] + 1 and after["boot_reason"] == 3
    assert after["uptime"] < before["uptime"] or after["uptime"] < 60
    assert abs(after["clock"] - time.time()) < 5 and int(after["node_status"]) & 1 == 0


def _set_configured_unit(gateway: Any, node: str, unit: int) -> None:
    text = gateway.config.read_text()
    text, n = re.subn(rf'(id = "{node}"\nbus = "[^"]+"\nunit = )\d+', rf"\g<1>{unit}", text)
    assert n == 1
    gateway.config.write_text(text)
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGHUP)


def test_set_unit_moves_the_node_and_the_configuration_follows(bench, watch, operators, gateway) -> None:
    """A unit change is confirmed at the new unit; after the configuration names it, the node is polled again."""
    node = bench.node_ids[1]
    old = unit_of(bench, node)
    new = 200 + old
    refused(send(watch, operators.ops, "group:half", "set_unit", {"unit": new}, "act-unit-grp"), "one node")
    refused(send(watch, operators.ops, node, "set_unit", {"unit": unit_of(bench, bench.node_ids[0])}, "act-unit-dup"),
            f"belongs to {bench.node_ids[0]}")
    refused(send(watch, operators.ops, node, "set_unit", {"unit": 248}, "act-unit-big"), "248 is outside 1..247")
    assert data(watch, node)["unit"] == old  # still polled at its unit: the refusals changed nothing
    result = done(send(watch, operators.ops, node, "set_unit", {"unit": new}, "act-unit"))
    assert "configuration" in result["detail"]
    try:
        _set_configured_unit(gateway, node, new)
        assert data(watch, node, lambda v: v["unit"] == new, within=60)["unit"] == new
    finally:
        done(send(watch, operators.ops, node, "set_unit", {"unit": old}, "act-unit-back"))
        _set_configured_unit(gateway, node, old)
    assert data(watch, node, lambda v: v["unit"] == old, within=60)["unit"] == old
