"""Roll-outs as a signed operator command: the gateway daemon updates its nodes, canaries first, polls going on.

A gateway of its own (``streetedge run``) on a line of three lamps provisioned
with a key, Mosquitto, and an independent paho observer. The operator sends
``update`` commands naming a package by its image hash; the gateway finds it in
its ``[update] packages`` directory, updates the canary, then the rest, and
publishes each step on the result topic before the result. Lamp 3 is never
updated: its polls go on meanwhile.

On a real bench (``--bench FILE``) the file names the line and its nodes (three
or more, the gateway must not run on that line otherwise), plus
``"update_key"`` (the nodes' key file) and ``"update_images"``:
``{"new": ROMFS file, "other": another ROMFS file}`` built for its boards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.update.package import make_package
from hil_tests.conftest import Daemon, Operators
from hil_tests.update_kit import PowerUp, variant_image
from tools.broker import LocalBroker
from tools.mqtt_watch import MqttWatch, Polls
from tools.operator import Signer, build_command
from tools.sim.code_slots import read_state, slot_image
from tools.sim.street import VirtualStreet
from tools.street_config import write_gateway_toml

SITE, GATEWAY = "hil-site", "gw-rollout"
ROOT = f"streetedge/v1/{SITE}/{GATEWAY}"
KEY = b"hil roll-out key"


@dataclass
class Rollout:
    """The roll-out bench: the gateway, its observer, the nodes, the packages and (virtual) the street."""

    daemon: Daemon
    watch: MqttWatch
    nodes: list[str]
    new: str
    """Image hash of a package signed with the nodes' key."""
    foreign: str
    """Image hash of a package signed with another key: every node refuses it."""
    street: VirtualStreet | None

    def send(self, signer: Signer, target: str, params: dict[str, Any], cid: str,
             within: float = 300.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Send an update command; its result and the progress maps that came before it."""
        mark = self.watch.mark()
        self.watch.publish(f"{ROOT}/cmd", signer.sign(build_command(target, "update", params, cid, lifetime=600)))
        found = self.watch.wait_for(lambda m: m.topic == f"{ROOT}/result" and _body(m.payload).get("id") == cid
                                    and _body(m.payload).get("status") != "running", within=within, after=mark)
        steps = [_body(m.payload) for m in self.watch.snapshot()[mark:]
                 if m.topic == f"{ROOT}/result" and _body(m.payload).get("id") == cid]
        return _body(found.payload), [s for s in steps if s["status"] == "running"]

    def running(self, node: str) -> str:
        """SHA-256 of the image in a virtual node's active slot."""
        assert self.street is not None
        flash = self.street.node(int(node.rsplit("-", 1)[1])).flash
        state = read_state(flash)
        assert state is not None
        return hashlib.sha256(slot_image(flash, int(state["active"]))).hexdigest()


def _body(payload: bytes) -> dict[str, Any]:
    body = cbor2.loads(payload)
    return body if isinstance(body, dict) else {}


def _packages(folder: Path, key: bytes, role: str, new: bytes, other: bytes) -> tuple[str, str]:
    folder.mkdir(parents=True)
    good = make_package(new, key=key, role=role, board="bench", health_s=2)
    foreign = make_package(other, key=b"not the nodes' key", role=role, board="bench", health_s=2)
    (folder / "new.update").write_bytes(good.to_bytes())
    (folder / "foreign.update").write_bytes(foreign.to_bytes())
    (folder / "notes.txt").write_text("not a package: the gateway passes it by\n")
    return good.digest.hex(), foreign.digest.hex()


@pytest.fixture(scope="module")
def rollout(request: pytest.FixtureRequest, broker: LocalBroker, operators: Operators,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rollout]:
    work = tmp_path_factory.mktemp("rollout")
    path = request.config.getoption("--bench")
    street: VirtualStreet | None = None
    if path:
        spec = json.loads(Path(path).read_text())
        line = spec["buses"][0]["name"]
        manifest = {"buses": spec["buses"][:1], "nodes": [n for n in spec["nodes"] if n["bus"] == line][:3]}
        key = Path(spec["update_key"]).read_bytes()
        images = {k: Path(v).read_bytes() for k, v in spec["update_images"].items()}
        new, foreign = _packages(work / "packages", key, manifest["nodes"][0]["role"], images["new"],
                                 images["other"])
    else:
        street = VirtualStreet(work / "street", nodes=3, baud=115200)
        for node in street.nodes.values():
            node.flash.mkdir(parents=True)
            (node.flash / "node.key").write_bytes(KEY)
    with street if street is not None else contextlib.nullcontext():
        if street is not None:
            manifest = street.start()
            new, foreign = _packages(work / "packages", KEY, "lamp", variant_image(street, work, "v2"),
                                     variant_image(street, work, "v3"))
        ids = [n["id"] for n in manifest["nodes"]]
        config = write_gateway_toml(work / "gateway.toml", manifest, broker_url=broker.url,
                                    protocol=broker.protocol, site=SITE, gateway=GATEWAY, interval=0.5,
                                    groups={"street": ids[:2], "half": ids[:1]})
        config.write_text(config.read_text() + "\n" + operators.toml(work)
                          + f'\n[delivery]\nbatch_interval = 0.5\n\n[update]\npackages = "{work / "packages"}"\n')
        daemon = Daemon(config, work / "gateway.log")
        with PowerUp(street) if street is not None else contextlib.nullcontext(), \
                MqttWatch(broker.host, broker.port, ROOT + "/#") as watch:
            daemon.start()
            try:
                polls = Polls(watch, ROOT)
                for node in ids:  # every node polled and published before the first command
                    polls.wait(node, within=60)
                yield Rollout(daemon, watch, ids, new, foreign, street)
                assert daemon.alive(), f"the gateway died:\n{daemon.log_tail()}"
            finally:
                daemon.stop()


def test_an_unknown_package_a_bad_signature_and_missing_parameters_are_refused(
        rollout: Rollout, operators: Operators) -> None:
    """Nothing is written for a refusal; each result says why in its reason and detail."""
    params = {"package": "ab" * 32, "canary": ["lamp-1"], "stop_on_failure": True}
    result, steps = rollout.send(operators.ops, "group:street", params, "up-unknown", within=30)
    assert (result["status"], result["reason"]) == ("rejected", "unknown_package"), result
    assert "no package with image sha256 abababab" in result["detail"] and not steps
    forged = Signer(Ed25519PrivateKey.generate(), "ops")  # claims to be ops, signs with another key
    result, _ = rollout.send(forged, "group:street", {**params, "package": rollout.new}, "up-forged", within=30)
    assert (result["status"], result["reason"]) == ("rejected", "bad_signature"), result
    result, _ = rollout.send(operators.maint, rollout.nodes[0], {**params, "package": rollout.new}, "up-scope",
                             within=30)  # maint may dim and switch only
    assert (result["status"], result["reason"]) == ("rejected", "out_of_scope"), result
    result, _ = rollout.send(operators.ops, "group:street", {"package": rollout.new, "canary": []}, "up-short",
                             within=30)
    assert (result["status"], result["reason"]) == ("rejected", "bad_parameters"), result
    assert "update needs 'stop_on_failure'" in result["detail"]
    result, _ = rollout.send(operators.ops, "group:street", {**params, "package": rollout.new,
                                                             "canary": [rollout.nodes[2]]}, "up-canary", within=30)
    assert (result["status"], result["reason"]) == ("rejected", "bad_parameters"), result
    assert f"canary {rollout.nodes[2]} is not among the command's targets" in result["detail"]


def test_a_roll_out_lands_on_the_canary_then_the_rest_while_polls_go_on(
        rollout: Rollout, operators: Operators) -> None:
    """Canary lamp 2 first, then lamp 1; lamp 3 (not targeted) is polled throughout."""
    canary, other, bystander = rollout.nodes[1], rollout.nodes[0], rollout.nodes[2]
    mark, started = rollout.watch.mark(), time.time()
    result, steps = rollout.send(operators.ops, "group:street",
                                 {"package": rollout.new, "canary": [canary], "stop_on_failure": True}, "up-1")
    ended = time.time()
    assert result["status"] == "done", result
    assert result["confirmed"] == [canary, other] and result["unconfirmed"] == []
    phases = [(s["phase"], s["node"]) for s in steps]
    assert phases[0] == ("canary", None) and phases[-1] == ("done", None), phases
    assert phases.index(("confirmed", canary)) < phases.index(("rest", None)) < phases.index(("confirmed", other))
    sent = [s for s in steps if s["phase"] == "sending" and s["node"] == other]
    assert sent and sent[-1]["done"] == sent[-1]["total"] > 0
    # The update sits behind the polls on the line: the bystander's polls kept coming during the roll-out.
    polls = Polls(rollout.watch, ROOT)
    during = {min(r["t"] for r in p.values()) for m in rollout.watch.snapshot()[mark:]
              for p in polls.of(m, bystander)}
    assert len([t for t in during if started <= t <= ended]) >= 2, sorted(during)
    if rollout.street is not None:
        assert rollout.running(canary) == rollout.running(other) == rollout.new
        assert rollout.running(bystander) != rollout.new


def test_a_failing_canary_stops_the_roll_out(rollout: Rollout, operators: Operators) -> None:
    """The canary refuses a package signed with another key; the other node is left alone, and says so."""
    canary, other = rollout.nodes[0], rollout.nodes[1]
    before = rollout.running(other) if rollout.street is not None else None
    result, steps = rollout.send(operators.ops, "group:street",
                                 {"package": rollout.foreign, "canary": [canary], "stop_on_failure": True}, "up-2")
    assert (result["status"], result["reason"]) == ("failed", "unconfirmed"), result
    assert result["confirmed"] == [] and result["unconfirmed"] == [canary, other]
    assert f"{canary}: unit" in result["detail"] and "MAC" in result["detail"]
    assert f"not updated: {other}" in result["detail"]
    phases = [(s["phase"], s["node"]) for s in steps]
    assert phases[-2:] == [("failed", canary), ("stopped", canary)], phases
    assert not any(node == other for _, node in phases)
    if rollout.street is not None:
        assert rollout.running(other) == before
