"""Roll-outs as a signed operator command: the gateway daemon updates its nodes, canaries first, polls going on.

A gateway of its own (``streetedge run``) on a line of three lamps provisioned
with a key, Mosquitto, and an independent paho observer. The operator sends
``update`` commands naming a package by its image hash; the gateway finds it in
its ``[update] packages`` directory, updates the canary, then the rest, and
publishes each step on the result topic before the result, and each node's
steps as its events on ``event/<node>``. Lamp 3 is never updated: its polls go
on meanwhile. A gateway killed (SIGKILL) in the middle of a roll-out goes on
with it when it starts again; an operator's ``cancel_update`` stops one.

On a real bench (``--bench FILE``) the file names the line and its nodes (three
or more, the gateway must not run on that line otherwise), plus
``"update_key"`` (the nodes' key file) and ``"update_images"``:
``{"new": ROMFS file, "other": another ROMFS file, "next": a third, "last": a fourth}``
built for its boards (each of them differs from the others).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
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
from protocols.update import CHUNK
from tools.broker import LocalBroker
from tools.decode import decode_message
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
    later: list[str]
    """Image hashes of two more packages signed with the nodes' key (for the restart and the cancel)."""
    street: VirtualStreet | None

    def send(self, signer: Signer, target: str, params: dict[str, Any], cid: str,
             within: float = 300.0, action: str = "update") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Send a command; its result and the progress maps that came before it."""
        mark = self.watch.mark()
        self.watch.publish(f"{ROOT}/cmd", signer.sign(build_command(target, action, params, cid, lifetime=600)))
        return self.result(cid, mark, within)

    def result(self, cid: str, mark: int, within: float = 300.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The result of command ``cid`` after ``mark``, and the progress maps before it."""
        found = self.watch.wait_for(lambda m: m.topic == f"{ROOT}/result" and _body(m.payload).get("id") == cid
                                    and _body(m.payload).get("status") != "running", within=within, after=mark)
        steps = [_body(m.payload) for m in self.watch.snapshot()[mark:]
                 if m.topic == f"{ROOT}/result" and _body(m.payload).get("id") == cid]
        return _body(found.payload), [s for s in steps if s["status"] == "running"]

    def steps(self, node: str, cid: str, after: int = 0) -> list[tuple[int, str, str]]:
        """The roll-out steps of ``cid`` that ``node`` published as its events: (seq, step, detail), by seq."""
        seen = {step[0]: step for m in self.watch.snapshot()[after:] if m.topic == f"{ROOT}/event/{node}"
                for step in _steps(m.payload, m.topic, cid)}
        return [seen[k] for k in sorted(seen)]  # a step sent again after a restart has the same seq

    def wait_steps(self, node: str, cid: str, last: str, after: int = 0) -> list[tuple[int, str, str]]:
        """:meth:`steps` once ``last`` is among them (events may trail the command's result)."""
        self.watch.wait_for(lambda m: m.topic == f"{ROOT}/event/{node}" and any(
            s[1] == last for s in _steps(m.payload, m.topic, cid)), within=30, after=after)
        return self.steps(node, cid, after)

    @contextlib.contextmanager
    def silenced(self, *nodes: str) -> Iterator[None]:
        """Virtual nodes stopped (SIGSTOP) meanwhile, as boards that stop answering; a real bench's run on."""
        pids = [] if self.street is None else [self.street.node(int(n.rsplit("-", 1)[1])).pid for n in nodes]
        for pid in pids:
            if pid is not None:
                os.kill(pid, signal.SIGSTOP)
        try:
            yield
        finally:
            for pid in pids:
                if pid is not None:
                    os.kill(pid, signal.SIGCONT)

    def running(self, node: str) -> str:
        """SHA-256 of the image in a virtual node's active slot."""
        assert self.street is not None
        flash = self.street.node(int(node.rsplit("-", 1)[1])).flash
        state = read_state(flash)
        assert state is not None
        return hashlib.sha256(slot_image(flash, int(state["active"]))).hexdigest()


def _steps(payload: bytes, topic: str, cid: str) -> list[tuple[int, str, str]]:
    """The roll-out steps of command ``cid`` in one event message: (seq, step, detail)."""
    packs: list[dict[str, Any]] = []
    for record in decode_message(payload, topic=topic):
        name = str(record["n"]).rsplit(":", 1)[-1]
        if name == "update":
            packs.append({})
        if name.startswith("update") and packs:
            packs[-1][name] = record.get("vs", record.get("v"))
    return [(int(p["update_seq"]), str(p["update"]), str(p.get("update_detail", ""))) for p in packs
            if p.get("update_command") == cid]


def _body(payload: bytes) -> dict[str, Any]:
    body = cbor2.loads(payload)
    return body if isinstance(body, dict) else {}


def _packages(folder: Path, key: bytes, role: str, images: dict[str, bytes]) -> tuple[str, str, list[str]]:
    folder.mkdir(parents=True)
    good = make_package(images["new"], key=key, role=role, board="bench", health_s=2)
    foreign = make_package(images["other"], key=b"not the nodes' key", role=role, board="bench", health_s=2)
    later = [make_package(images[k], key=key, role=role, board="bench", health_s=2) for k in ("next", "last")]
    for name, package in (("new", good), ("foreign", foreign), ("next", later[0]), ("last", later[1])):
        (folder / f"{name}.update").write_bytes(package.to_bytes())
    (folder / "notes.txt").write_text("not a package: the gateway passes it by\n")
    return good.digest.hex(), foreign.digest.hex(), [p.digest.hex() for p in later]


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
        new, foreign, later = _packages(work / "packages", key, manifest["nodes"][0]["role"], images)
    else:
        street = VirtualStreet(work / "street", nodes=3, baud=115200)
        for node in street.nodes.values():
            node.flash.mkdir(parents=True)
            (node.flash / "node.key").write_bytes(KEY)
    with street if street is not None else contextlib.nullcontext():
        if street is not None:
            manifest = street.start()
            images = {name: variant_image(street, work, tag) for name, tag in
                      (("new", "v2"), ("other", "v3"), ("next", "v4"), ("last", "v5"))}
            new, foreign, later = _packages(work / "packages", KEY, "lamp", images)
        ids = [n["id"] for n in manifest["nodes"]]
        config = write_gateway_toml(work / "gateway.toml", manifest, broker_url=broker.url,
                                    protocol=broker.protocol, site=SITE, gateway=GATEWAY, interval=0.5,
                                    groups={"street": ids[:2], "half": ids[:1]})
        config.write_text(config.read_text() + "\n" + operators.toml(work)
                          + f'\n[delivery]\nbatch_interval = 0.5\noutbox = "{work / "outbox.db"}"\n'  # outlives a kill
                          f'\n[update]\npackages = "{work / "packages"}"\n')
        daemon = Daemon(config, work / "gateway.log")
        with PowerUp(street) if street is not None else contextlib.nullcontext(), \
                MqttWatch(broker.host, broker.port, ROOT + "/#") as watch:
            daemon.start()
            try:
                polls = Polls(watch, ROOT)
                for node in ids:  # every node polled and published before the first command
                    polls.wait(node, within=60)
                yield Rollout(daemon, watch, ids, new, foreign, later, street)
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
    for node in (canary, other):  # each node's steps as its own events, in order
        assert [step for _, step, _ in rollout.wait_steps(node, "up-1", "confirmed", mark)] == \
            ["started", "transferred", "committed", "confirmed"]
    assert rollout.steps(bystander, "up-1", mark) == []
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
    events = rollout.wait_steps(canary, "up-2", "failed")
    assert [step for _, step, _ in events] == ["started", "transferred", "failed"]  # refused at the commit
    assert "MAC" in events[-1][2]
    assert rollout.steps(other, "up-2") == []
    if rollout.street is not None:
        assert rollout.running(other) == before


def test_a_roll_out_goes_on_after_the_gateway_is_killed(rollout: Rollout, operators: Operators) -> None:
    """SIGKILL while the second node takes its image: started again, the gateway resumes the roll-out under
    the same id; the canary is not touched again, the second node's transfer goes on where it stood."""
    canary, other = rollout.nodes[1], rollout.nodes[0]
    mark = rollout.watch.mark()
    rollout.watch.publish(f"{ROOT}/cmd", operators.ops.sign(build_command(
        "group:street", "update", {"package": rollout.later[0], "canary": [canary], "stop_on_failure": True},
        "up-kill", lifetime=600)))
    rollout.watch.wait_for(lambda m: m.topic == f"{ROOT}/result" and _body(m.payload).get("id") == "up-kill"
                           and _body(m.payload).get("phase") == "sending" and _body(m.payload).get("node") == other
                           and _body(m.payload).get("done", 0) > 8 * CHUNK, within=300, after=mark)
    assert rollout.daemon.proc is not None
    rollout.daemon.proc.kill()  # no goodbye: what the gateway knows is what it stored
    rollout.daemon.proc.wait()
    rollout.daemon.start()
    restart = rollout.watch.mark()
    result, steps = rollout.result("up-kill", restart)
    assert result["status"] == "done", f"{result}\n{rollout.daemon.log_tail()}"
    assert result["confirmed"] == [canary, other] and result["unconfirmed"] == []
    resumed = [(s["phase"], s["node"]) for s in steps]
    assert ("sending", canary) not in resumed and ("confirmed", other) in resumed, resumed
    first = next(s for s in steps if s["phase"] == "sending" and s["node"] == other)
    assert first["done"] > 8 * CHUNK, first  # the node kept what it had received: not from byte 0
    for node in (canary, other):  # each step once by seq, however often it was published
        assert [step for _, step, _ in rollout.wait_steps(node, "up-kill", "confirmed", mark)] == \
            ["started", "transferred", "committed", "confirmed"]
    if rollout.street is not None:
        assert rollout.running(canary) == rollout.running(other) == rollout.later[0]


def test_an_operator_cancels_a_running_roll_out(rollout: Rollout, operators: Operators) -> None:
    """``cancel_update`` stops the roll-out: its result says cancelled, the nodes keep the image they ran."""
    first, second = rollout.nodes[0], rollout.nodes[1]
    before = rollout.running(first) if rollout.street is not None else None
    result, _ = rollout.send(operators.ops, "group:street", {"rollout": "up-none"}, "cancel-0", within=30,
                             action="cancel_update")
    assert (result["status"], result["reason"]) == ("rejected", "bad_parameters"), result
    assert "no roll-out 'up-none' is running" in result["detail"]
    mark = rollout.watch.mark()
    rollout.watch.publish(f"{ROOT}/cmd", operators.ops.sign(build_command(
        "group:street", "update", {"package": rollout.later[1], "canary": [], "stop_on_failure": True},
        "up-cancel", lifetime=600)))
    rollout.watch.wait_for(lambda m: m.topic == f"{ROOT}/result" and _body(m.payload).get("id") == "up-cancel"
                           and _body(m.payload).get("phase") == "sending", within=60, after=mark)
    with rollout.silenced(first, second):  # a virtual street's unpaced transfer could end before the cancel lands
        _cancel_a_running_roll_out(rollout, operators, first, second)
    ended, steps = rollout.result("up-cancel", mark, within=30)
    assert (ended["status"], ended["reason"]) == ("failed", "cancelled"), ended
    assert ended["unconfirmed"] == [first, second] and steps[-1]["phase"] == "stopped"
    assert [step for _, step, _ in rollout.steps(first, "up-cancel", mark)] == ["started"]
    if rollout.street is not None:
        assert rollout.running(first) == before


def _cancel_a_running_roll_out(rollout: Rollout, operators: Operators, first: str, second: str) -> None:
    """A cancel out of the operator's scope, one that misses a node of the roll-out, then the one that stops it."""
    result, _ = rollout.send(operators.maint, first, {"rollout": "up-cancel"}, "cancel-1", within=30,
                             action="cancel_update")
    assert (result["status"], result["reason"]) == ("rejected", "out_of_scope"), result
    result, _ = rollout.send(operators.ops, first, {"rollout": "up-cancel"}, "cancel-2", within=30,
                             action="cancel_update")
    assert (result["status"], result["reason"]) == ("rejected", "bad_parameters"), result
    assert f"also updates {second}" in result["detail"]
    result, _ = rollout.send(operators.ops, "group:street", {"rollout": "up-cancel"}, "cancel-3", within=60,
                             action="cancel_update")
    assert result["status"] == "done" and "cancelled; confirmed: none" in result["detail"], result
    assert f"not updated: {first}, {second}" in result["detail"]


def test_a_finished_or_cancelled_roll_out_is_not_resumed(rollout: Rollout, operators: Operators) -> None:
    """Stopped and started again, the gateway takes up neither the finished nor the cancelled roll-out."""
    rollout.daemon.stop()
    mark = rollout.watch.mark()
    rollout.daemon.start()
    Polls(rollout.watch, ROOT).wait(rollout.nodes[2], within=60, after=mark)  # connected: commands are heard
    for cid in ("up-kill", "up-cancel"):  # a roll-out the gateway runs would be cancelled; none is
        result, _ = rollout.send(operators.ops, "group:street", {"rollout": cid}, f"cancel-{cid}", within=60,
                                 action="cancel_update")
        assert (result["status"], result["reason"]) == ("rejected", "bad_parameters"), result
        assert f"no roll-out {cid!r} is running" in result["detail"]
    assert not [m for m in rollout.watch.snapshot()[mark:] if m.topic == f"{ROOT}/result"
                and _body(m.payload).get("id") in ("up-kill", "up-cancel")]
