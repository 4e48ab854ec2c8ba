"""Every refusal reason against the real broker and the real firmware: the answer names it, the lamp stays.

Each refused command asks lamp 0 for a level it does not have; after the
refusal, the lamp must still report (and, on the virtual street, physically
give) the level it had.
"""

from __future__ import annotations

import time
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tools.mqtt_watch import MqttWatch, Polls
from tools.operator import Signer, build_command

ROOT = "streetedge/v1/hil-site/gw-hil"
BASELINE = 70


def result_for(watch: MqttWatch, payload: bytes, cid: str | None, within: float = 20.0) -> dict[str, Any]:
    """Publish a raw payload on the command topic and return the result carrying ``cid``."""
    mark = watch.mark()
    watch.publish(f"{ROOT}/cmd", payload)
    msg = watch.wait_for(
        lambda m: m.topic == f"{ROOT}/result" and cbor2.loads(m.payload).get("id") == cid, within=within, after=mark
    )
    result: dict[str, Any] = cbor2.loads(msg.payload)
    return result


def dim_level_now(watch: MqttWatch, node: str) -> int:
    """The lamp's dim_level in its first poll taken from now on (whichever data profile the gateway uses)."""
    return int(Polls(watch, ROOT).next(node)["dim_level"]["v"])


def refusals(node: str, outside: str, ops: Signer, maint: Signer) -> list[tuple[str, str | None, bytes]]:
    """(reason, id, payload) for every reason that needs no history; each asks ``node`` for 5 %."""
    now = time.time()
    stranger = Signer(Ed25519PrivateKey.generate(), "ops")  # claims the ops key id, signs with another key
    unknown = Signer(Ed25519PrivateKey.generate(), "nobody")
    tampered = bytearray(ops.sign(build_command(node, "dim", {"level": 5}, "x-sig")))
    tampered[-5] ^= 0x10
    return [
        ("not_signed", "x-plain", cbor2.dumps(build_command(node, "dim", {"level": 5}, "x-plain"))),
        ("bad_signature", "x-sig", bytes(tampered)),
        ("bad_signature", "x-forged", stranger.sign(build_command(node, "dim", {"level": 5}, "x-forged"))),
        ("unknown_key", "x-key", unknown.sign(build_command(node, "dim", {"level": 5}, "x-key"))),
        ("out_of_scope", "x-scope", maint.sign(build_command(outside, "dim", {"level": 5}, "x-scope"))),
        ("out_of_scope", "x-scope2", maint.sign(build_command(node, "time_sync", None, "x-scope2"))),
        ("expired", "x-old", ops.sign(build_command(node, "dim", {"level": 5}, "x-old", now=now - 7200))),
        ("issued_in_future", "x-new", ops.sign(build_command(node, "dim", {"level": 5}, "x-new", now=now + 3600))),
        ("malformed", None, b"\xd2\x84\x43\xa1\x01\x27\xa0"),
        ("unknown_action", "x-act", ops.sign(build_command(node, "blink", {"level": 5}, "x-act"))),
        ("bad_parameters", "x-par", ops.sign(build_command(node, "dim", {"level": 500}, "x-par"))),
        ("unknown_target", "x-tgt", ops.sign(build_command("lamp-999", "dim", {"level": 5}, "x-tgt"))),
    ]


def test_every_refusal_leaves_the_lamp_as_it_was(bench, watch, operators, until) -> None:
    """Each refusal reason: rejected with that reason and the command's id; the lamp keeps its level."""
    node, outside = bench.node_ids[0], bench.node_ids[-1]  # maint may command the first half only
    dim_level_now(watch, node)  # the gateway is up and polling (so it listens for commands too)
    base = operators.ops.sign(build_command(node, "dim", {"level": BASELINE}, "sec-base"))
    assert result_for(watch, base, "sec-base")["status"] == "done"
    for reason, cid, payload in refusals(node, outside, operators.ops, operators.maint):
        result = result_for(watch, payload, cid)
        assert (result["status"], result["reason"], result["id"]) == ("rejected", reason, cid), result
        assert result["confirmed"] == result["unconfirmed"] == []
    assert dim_level_now(watch, node) == BASELINE
    if bench.virtual:
        until(lambda: abs(bench.world(node)["light"] - BASELINE / 100) < 0.01)


def test_replayed_id_and_retry(bench, watch, operators) -> None:
    """The same envelope again is answered from memory (not run twice); a new command reusing the id is refused."""
    node = bench.node_ids[0]
    first = operators.ops.sign(build_command(node, "dim", {"level": 45}, "sec-once"))
    done = result_for(watch, first, "sec-once")
    assert done["status"] == "done"
    assert result_for(watch, operators.ops.sign(build_command(node, "dim", {"level": BASELINE}, "sec-b2")),
                      "sec-b2")["status"] == "done"
    # The earlier result (without its timing, `ms`: the retry did not run); the lamp is not dimmed to 45.
    assert result_for(watch, first, "sec-once") == {k: v for k, v in done.items() if k != "ms"}
    again = operators.ops.sign(build_command(node, "dim", {"level": 5}, "sec-once"))
    assert result_for(watch, again, "sec-once")["reason"] == "replayed"
    assert dim_level_now(watch, node) == BASELINE


def test_offline_target_is_refused(bench, watch, operators) -> None:
    """A lamp whose node is powered off goes offline; commands to it are refused as offline_target."""
    if not bench.virtual:
        return  # a real bench cannot cut a node's power on demand
    node = bench.node_ids[-1]
    unit = next(n["unit"] for n in bench.manifest["nodes"] if n["id"] == node)
    bench.street.kill_node(unit)
    try:
        deadline = time.monotonic() + 90
        while True:
            cid = f"sec-off-{int(time.monotonic() * 1000)}"
            result = result_for(watch, operators.ops.sign(build_command(node, "dim", {"level": 5}, cid)), cid)
            if result.get("reason") == "offline_target":
                break
            assert result["status"] == "failed", result  # not yet known offline: written, not confirmed
            assert time.monotonic() < deadline, f"the node never went offline: {result}"
            time.sleep(1.0)
    finally:
        bench.street.start_node(unit)
    Polls(watch, ROOT).next(node, within=60)  # polled again once it is back


def test_audit_entries_reach_upstream(bench, watch, operators) -> None:
    """The executed entry of a command appears on <root>/audit, with its hash."""
    node = bench.node_ids[0]
    mark = watch.mark()
    payload = operators.ops.sign(build_command(node, "dim", {"level": BASELINE}, "sec-audit"))
    assert result_for(watch, payload, "sec-audit")["status"] == "done"
    msg = watch.wait_for(
        lambda m: m.topic == f"{ROOT}/audit" and cbor2.loads(m.payload).get("id") == "sec-audit"
        and cbor2.loads(m.payload).get("event") == "executed", after=mark,
    )
    entry = cbor2.loads(msg.payload)
    assert entry["status"] == "done" and len(entry["hash"]) == 64 and len(entry["prev"]) == 64
