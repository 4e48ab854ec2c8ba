"""The streetedge command as a user runs it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def streetedge(*args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", *args], capture_output=True, text=True, timeout=timeout,
        check=False, cwd=cwd,
    )


def test_run_with_a_malformed_config_names_the_key(tmp_path: Path) -> None:
    """A bad configuration stops the daemon at once with a message naming the key; exit code 2."""
    bad = tmp_path / "gateway.toml"
    bad.write_text(
        'site = "s"\ngateway = "g"\n[broker]\nurl = "mqtt://127.0.0.1:1883"\n'
        '[[bus]]\nname = "bus0"\ndevice = "/dev/null"\n'
        '[[node]]\nid = "lamp-1"\nbus = "bus0"\nunit = 300\nrole = "lamp"\n'
    )
    proc = streetedge("run", "-c", str(bad), timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "unit" in proc.stderr and "300" in proc.stderr, proc.stderr


def test_run_with_a_missing_config_says_so(tmp_path: Path) -> None:
    """A missing file is reported by path, not as a traceback."""
    proc = streetedge("run", "-c", str(tmp_path / "nope.toml"), timeout=30)
    assert proc.returncode == 2
    assert "nope.toml" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_demo_runs_end_to_end_on_the_embedded_broker(tmp_path: Path) -> None:
    """`streetedge demo` with the embedded amqtt broker: readings acknowledged, commands answered."""
    proc = streetedge(
        "demo", "--nodes", "2", "--broker", "amqtt", "--seconds", "20", "--workdir", str(tmp_path / "demo"),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    match = re.search(r"demo stopped: (\d+) readings acknowledged by the broker, commands (\{.*\})", proc.stdout)
    assert match, proc.stdout[-3000:]
    assert int(match.group(1)) > 0
    assert "'done'" in match.group(2), match.group(2)


def test_decode_turns_senml_cbor_into_records(tmp_path: Path) -> None:
    """`streetedge decode` resolves a SenML-CBOR pack into JSON records."""
    import cbor2

    from protocols import senml

    payload = tmp_path / "pack.cbor"
    pack = [{"bn": "urn:dev:x:", "bt": 1.7e9, "n": "power", "u": "W", "v": 41.5}]
    payload.write_bytes(cbor2.dumps(senml.to_labels(pack)))
    proc = streetedge("decode", str(payload), timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert '"n": "urn:dev:x:power"' in proc.stdout
    assert '"v": 41.5' in proc.stdout


def test_sim_writes_a_gateway_configuration_that_checks(tmp_path: Path) -> None:
    """`streetedge sim --write-config`: a configuration for this street that loads and passes `check`."""
    import json
    import signal

    from gateway.service.config import load_config

    config = tmp_path / "gateway.toml"
    sim = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "sim", "--nodes", "2", "--workdir", str(tmp_path / "street"),
         "--write-config", str(config), "--broker", "mqtt://127.0.0.1:1884", "--site", "lab", "--gateway", "gw-7"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        assert sim.stdout is not None
        lines: list[str] = []
        while not any("gateway configuration written to" in line for line in lines):
            line = sim.stdout.readline()
            assert line, "".join(lines)[-3000:]
            lines.append(line)
        manifest = json.loads((tmp_path / "street" / "manifest.json").read_text())
        cfg = load_config(config)
        assert (cfg.site, cfg.gateway, cfg.broker.urls) == ("lab", "gw-7", ["mqtt://127.0.0.1:1884"])
        assert [(n.id, n.unit, n.role) for n in cfg.node] == [("lamp-1", 1, "lamp"), ("lamp-2", 2, "lamp")]
        assert (cfg.bus[0].device, cfg.bus[0].parity) == (manifest["buses"][0]["device"], "N")
        check = streetedge("check", "-c", str(config), "--no-broker", timeout=60)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        sim.send_signal(signal.SIGINT)
        assert sim.wait(60) == 0
