"""streetedge listen: either profile's live data as SenML-JSON lines, checked against paho + cbor2 on Mosquitto."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.client as paho
import pytest

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.delivery import birth, compact
from gateway.delivery.senml_records import build_pack, encode_pack
from tools.broker import LocalBroker
from tools.listen import Listener

REPO = Path(__file__).resolve().parents[2]
LAMP = load_role("lamp")
REGS = [r for t in (HOLDING, INPUT) for r in LAMP.registers if r.table == t]
ROOT = "streetedge/v1/s/g"
# RFC 8428 table 4, restated here so that the check does not lean on protocols.senml
RFC_LABELS = {-1: "bver", -2: "bn", -3: "bt", -4: "bu", -5: "bv", -6: "bs", 0: "n", 1: "u", 2: "v", 3: "vs",
              4: "vb", 5: "s", 6: "t", 7: "ut", 8: "vd"}


def _birth() -> bytes:
    return birth.encode(birth.gateway_birth(site="s", gateway="g", session=1, ts=0.0, profile="compact",
                                            nodes=[("lamp-1", birth.schema_of(LAMP))]))


def _raws(k: int) -> list[int]:
    return [int(r.minimum) + (k % 2 if r.maximum > r.minimum else 0) for r in REGS]


def _independent(payload: bytes) -> list[dict[str, Any]]:
    """A SenML-CBOR pack decoded with cbor2 and the RFC's label table alone, in the JSON form's terms."""
    return [{RFC_LABELS[k]: (base64.urlsafe_b64encode(v).rstrip(b"=").decode() if k == 8 else v)
             for k, v in record.items()} for record in cbor2.loads(payload)]


def test_listener_reads_both_profiles_alike() -> None:
    listener = Listener()
    gb = _birth()
    t = 1_798_761_600.5
    senml_payload = encode_pack(build_pack("s", "lamp-1", t, list(zip(REGS, _raws(1), strict=True))))
    compact_payload = compact.encode([compact.Row(0, int(t * 1000), _raws(1))], cbor2.loads(gb), seq=1)
    with pytest.raises(ValueError, match="never seen"):
        listener.feed(f"{ROOT}/compact", compact_payload)
    assert listener.feed(f"{ROOT}/birth", gb) == []
    from_compact = listener.feed(f"{ROOT}/compact", compact_payload)
    from_senml = listener.feed(f"{ROOT}/data/lamp-1", senml_payload)
    assert len(from_compact) == 1 and from_compact == from_senml
    assert json.loads(from_senml[0]) == _independent(senml_payload)
    assert listener.feed(f"{ROOT}/state", cbor2.dumps({"online": True})) == []
    with pytest.raises(ValueError, match="not CBOR"):
        listener.feed(f"{ROOT}/data/lamp-1", b"\xff\x00")
    with pytest.raises(ValueError, match="array of records"):
        listener.feed(f"{ROOT}/data/lamp-1", cbor2.dumps({"n": 1}))
    resolved = Listener(resolved=True)
    line = resolved.feed(f"{ROOT}/data/lamp-1", senml_payload)[0]
    assert all("bn" not in r and r["n"].startswith("urn:dev:streetedge:s:lamp-1:") for r in json.loads(line))


def test_listen_against_mosquitto_matches_an_independent_subscriber(mosquitto: LocalBroker) -> None:
    """A paho subscriber decodes the SenML-CBOR packs with cbor2; listen's lines must say the same."""
    seen: list[bytes] = []
    got = threading.Event()
    independent = paho.Client(paho.CallbackAPIVersion.VERSION2)
    independent.on_message = lambda _c, _u, msg: (seen.append(msg.payload), got.set())
    independent.connect(mosquitto.host, mosquitto.port)
    independent.subscribe(f"{ROOT}/data/#", qos=1)
    independent.loop_start()
    listen = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "listen", "--broker", f"mqtt://{mosquitto.host}:{mosquitto.port}",
         "--site", "s", "--gateway", "g", "--count", "6"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )
    publisher = paho.Client(paho.CallbackAPIVersion.VERSION2)
    publisher.connect(mosquitto.host, mosquitto.port)
    publisher.loop_start()
    try:
        gb = _birth()
        publisher.publish(f"{ROOT}/birth", gb, qos=1, retain=True).wait_for_publish(10)
        assert listen.stderr is not None
        assert "listening to streetedge/v1/s/g/#" in listen.stderr.readline()  # subscribed: nothing is missed
        payloads = []
        for k in range(3):
            t = 1_798_761_600.5 + k
            pack = encode_pack(build_pack("s", "lamp-1", t, list(zip(REGS, _raws(k), strict=True))))
            payloads.append(pack)
            publisher.publish(f"{ROOT}/data/lamp-1", pack, qos=1).wait_for_publish(10)
            publisher.publish(f"{ROOT}/garbage", b"\xff", qos=1).wait_for_publish(10)  # not data: ignored
            body = compact.encode([compact.Row(0, int(t * 1000), _raws(k))], cbor2.loads(gb), seq=k + 1)
            publisher.publish(f"{ROOT}/compact", body, qos=1).wait_for_publish(10)
        publisher.publish(f"{ROOT}/data/lamp-1", b"\xff\xff", qos=1).wait_for_publish(10)
        out, err = listen.communicate(timeout=60)
    finally:
        listen.kill()
        publisher.loop_stop()
        independent.loop_stop()
    assert listen.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 6
    deadline = time.monotonic() + 10
    while len(seen) < 3 and time.monotonic() < deadline:
        got.wait(0.1)
    expected = [_independent(p) for p in seen[:3]]
    assert lines[0::2] == expected  # the SenML profile's packs
    assert lines[1::2] == expected  # the compact profile's polls say the same


def test_listen_without_a_broker_says_so_in_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "tools.cli", "listen", "--broker", "mqtt://127.0.0.1:9"],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert done.returncode == 3
    assert done.stderr.strip().count("\n") == 0 and "cannot reach the broker" in done.stderr
    done = subprocess.run([sys.executable, "-m", "tools.cli", "listen", "--broker", "http://x"],
                          capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert done.returncode == 2 and "mqtt://host" in done.stderr
