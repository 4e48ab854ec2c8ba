"""BLE nodes of `streetedge sim` heard and commanded by `streetedge run`, two processes apart.

`streetedge sim --ble-meters 2` runs the real meter firmware (MicroPython unix port) on the virtual radio
and offers the radio's HCI on a loopback port; the gateway configuration it writes names that port as
the gateway's BLE adapter (`bumble:tcp-client:...`). The gateway daemon, another process, uses its
ordinary bleak code on a Bumble host there. Mosquitto carries the data; paho reads it and publishes a
signed command, whose result says the node took the setting and read it back over GATT.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cbor2
import paho.mqtt.publish as paho_publish
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.mqtt.topics import Topics
from gateway.service.config import load_config
from protocols import senml
from tools.keys import commands_toml, key_entry, public_text
from tools.operator import Signer

OPERATOR = Signer(Ed25519PrivateKey.generate(), "ops")


def start_sim(tmp_path: Path, broker_url: str) -> tuple[subprocess.Popen[bytes], Path]:
    """`streetedge sim` with two BLE meters and no lamps; its process and the configuration it wrote."""
    config = tmp_path / "gateway.toml"
    out = tmp_path / "sim.out"
    with out.open("wb") as f:  # a file, not a pipe nobody drains
        sim = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "sim", "--nodes", "0", "--ble-meters", "2", "--ble-interval-ms",
             "500", "--workdir", str(tmp_path / "street"), "--write-config", str(config), "--broker", broker_url,
             "--site", "lab", "--gateway", "gw"],
            stdout=f, stderr=subprocess.STDOUT,
        )
    while b"Ctrl-C stops the street" not in out.read_bytes():
        assert sim.poll() is None, out.read_text()[-3000:]
        time.sleep(0.1)
    return sim, config


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def volume(msg: Any) -> float:
    records = senml.resolve(senml.from_labels(cbor2.loads(bytes(msg.payload))))
    return float(next(r["v"] for r in records if r["n"].endswith(":volume")))


def test_a_daemon_hears_the_sims_ble_meters_and_commands_one(mosquitto, subscriber, tmp_path: Path) -> None:
    """Both BLE meters' readings arrive upstream from `streetedge run`; a signed set_config to one of them
    comes back done: written to the node and read back from it over GATT. Then `streetedge ble scan` on the
    configuration's adapter lists both, decrypted with their keys, and `streetedge ble radio` sets one's TX
    power and sleep (the node's ble.json holds them)."""
    sim, config = start_sim(tmp_path, mosquitto.url)
    gateway: subprocess.Popen[bytes] | None = None
    gateway_out = tmp_path / "gateway.out"
    try:
        manifest = json.loads((tmp_path / "street" / "manifest.json").read_text())
        nodes = [n["id"] for n in manifest["ble"]["nodes"]]
        assert nodes == ["pit-1", "pit-2"]
        cfg = load_config(config)
        assert cfg.ble.adapter == manifest["ble"]["adapter"] and cfg.ble.adapter.startswith("bumble:tcp-client:")
        assert [n.id for n in cfg.node] == []  # heard on the radio, not polled
        state = tmp_path / "state"
        state.mkdir()
        with config.open("a") as f:
            f.write(f'\n[delivery]\noutbox = "{tmp_path / "outbox.db"}"\nprofile = "senml"\n[http]\nenabled = false\n'
                    f"{commands_toml(state)}\n{key_entry('ops', public_text(OPERATOR.key), ['*'], ['*'])}")
        topics = Topics("lab", "gw")
        data = {node: subscriber(mosquitto.host, mosquitto.port, topics.data_prefix + node) for node in nodes}
        results = subscriber(mosquitto.host, mosquitto.port, topics.result)
        with gateway_out.open("wb") as out:
            gateway = subprocess.Popen([sys.executable, "-m", "tools.cli", "run", "-c", str(config)],
                                       stdout=out, stderr=subprocess.STDOUT)

        async def main() -> dict[str, Any]:
            for node in nodes:
                first = await data[node].wait(lambda _m: True, within=90)
                assert volume(first) >= 0
            paho_publish.single(topics.cmd, OPERATOR.envelope("pit-2", "set_config", {"burst_flow": 2.5},
                                                               command_id="c-1"),
                                qos=1, hostname=mosquitto.host, port=mosquitto.port)
            msg = await results.wait(lambda m: cbor2.loads(m.payload)["id"] == "c-1", within=60)
            return dict(cbor2.loads(msg.payload))

        result = asyncio.run(main())
        assert (result["status"], result["confirmed"], result["unconfirmed"]) == ("done", ["pit-2"], []), result
        gateway_code = stop(gateway)
        gateway = None
        # The field engineer's scan on the same adapter setting, once the daemon let go of the HCI port.
        scan = subprocess.run([sys.executable, "-m", "tools.cli", "ble", "scan", "--config", str(config),
                               "--seconds", "2"], capture_output=True, text=True, timeout=120, check=False)
        # ... and the radio settings of one node, over GATT on the same adapter, with the daemon's counters.
        radio = subprocess.run([sys.executable, "-m", "tools.cli", "ble", "radio", "--config", str(config),
                                "--node", "pit-1", "--tx-power", "-6", "--sleep", "on"],
                               capture_output=True, text=True, timeout=120, check=False)
        stored = json.loads((tmp_path / "street" / "node-1" / "ble.json").read_text())
    finally:
        if gateway is not None:
            stop(gateway)
        assert stop(sim) == 0
    log = gateway_out.read_text()
    assert gateway_code == 0, log[-3000:]
    assert (radio.returncode, radio.stdout) == (0, "pit-1: interval 500 ms, TX power -6 dBm, sleep on\n"), radio.stderr
    assert (stored["tx_power_dbm"], stored["sleep"], stored["interval_ms"]) == (-6, True, 500)
    assert scan.returncode == 0, scan.stderr[-3000:]
    rows = {line.split()[-1]: line.split() for line in scan.stdout.splitlines()[1:]}
    assert {node: (row[2], row[4]) for node, row in rows.items()} == {"pit-1": ("meter", "yes"),
                                                                     "pit-2": ("meter", "yes")}, scan.stdout
    for node in ("pit-1", "pit-2"):  # "back online" when the gateway's first silence check came before the node
        assert re.search(rf"node {node} (back )?online \(BLE D0:5E:00:00:01:0", log), log[-3000:]
