"""streetedge provision for BLE nodes: a blank virtual board becomes a battery meter heard on the virtual radio."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from gateway.service.config_ble import BleNodeConfig
from tools.cli import main
from tools.sim.console import start_console
from tools.sim.radio_street import RadioThread
from tools.sim.street import VirtualStreet

REPO = Path(__file__).resolve().parents[2]
KEY = "00112233445566778899aabbccddeeff"


def _provision(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", "provision", *args, "--record",
                           str(cwd / "provisioned.jsonl"), "--workdir", str(cwd / "build")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture
def radio(tmp_path: Path) -> Iterator[tuple[RadioThread, dict[str, object]]]:
    """The virtual radio (a radio host for boards, an HCI port for the gateway) and a blank board's wiring."""
    street = VirtualStreet(tmp_path / "street", nodes=1, first_unit=9, role="meter")  # never started: no bus
    with RadioThread(street, {9: "meter"}, gatt_every=None) as thread:
        yield thread, {**street.hardware[9], "seed": 9}


def test_a_blank_board_becomes_a_battery_meter_seen_advertising(tmp_path: Path,
                                                                 radio: tuple[RadioThread, dict[str, object]]) -> None:
    thread, wiring = radio
    adapter = thread.radio.manifest()["adapter"]
    flash = tmp_path / "board"
    console, link = start_console(flash, wiring)  # MicroPython and an empty filesystem: fresh from flashing
    try:
        (tmp_path / "pit-9.key").write_text(KEY.upper() + "\n")
        done = _provision("--port", str(link), "--board", "sim", "--role", "meter", "--node-id", "pit-9",
                          "--no-rs485", "--ble-key", str(tmp_path / "pit-9.key"), "--ble-adapter", adapter,
                          cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        address = wiring["ble_address"]
        assert f"pit-9 advertises as {address}" in done.stdout, done.stdout
        assert f"provisioned pit-9 (BLE {address}" in done.stdout
        assert json.loads((flash / "config.json").read_text()) == {"unit": 1, "role": "meter", "bus": False}
        assert json.loads((flash / "ble.json").read_text()) == {"key": KEY, "interval_ms": 1000, "tx_power_dbm": 0,
                                                                "sleep": False}
        record = json.loads((tmp_path / "provisioned.jsonl").read_text().splitlines()[-1])
        assert record["ble_address"] == address and record["baud"] is None and record["bus_checked"] is False
    finally:
        console.terminate()
        console.wait(10)
    toml = _provision("--nodes-toml", cwd=tmp_path)
    assert toml.returncode == 0, toml.stderr
    entries = tomllib.loads(toml.stdout)
    assert "node" not in entries  # a battery node is no [[node]] of a bus
    assert [msgspec.convert(n, BleNodeConfig) for n in entries["ble"]["node"]] == [
        BleNodeConfig(id="pit-9", address=str(address), key=KEY, role="meter", interval=1.0)]


def test_a_bus_node_record_without_advert_check_gives_no_address(tmp_path: Path) -> None:
    record = tmp_path / "provisioned.jsonl"
    record.write_text(json.dumps({"node": "pit-3", "board": "sim", "role": "meter", "image": "ab" * 32, "unit": 3,
                                  "provisioned": "2026-12-06T10:00:00Z", "by": "x", "ble_key": KEY,
                                  "ble_interval_ms": 1000, "ble_address": None}) + "\n")
    done = _provision("--nodes-toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert tomllib.loads(done.stdout) == {}  # no entry the gateway would refuse, only a comment saying why
    assert "pit-3: BLE address unknown, provision it again with --ble-adapter" in done.stdout


BASE = ["--port", "/dev/null", "--board", "sim", "--role", "meter", "--node-id", "pit-9", "--no-bus-check"]


@pytest.mark.parametrize(("args", "key", "words"), [
    (["--no-rs485"], None, "--no-rs485 needs --ble-key"),
    (["--no-rs485", "--ble-key", "{dir}/missing.key"], None, "missing.key: cannot be read (No such file"),
    (["--no-rs485", "--ble-key", "{dir}/k"], "0011", "must hold the node's key as 32 hex digits"),
    (["--no-rs485", "--ble-key", "{dir}/k"], "zz" * 16, "must hold the node's key as 32 hex digits"),
    (["--no-rs485", "--ble-key", "{dir}/k", "--ble-interval-ms", "5"], KEY, "radio settings"),
    (["--no-rs485", "--ble-key", "{dir}/k", "--ble-tx-power", "4"], KEY, "radio settings"),
    (["--unit", "2", "--baud", "19200", "--ble-key", "{dir}/k", "--role", "lamp"], KEY,
     "--role lamp: a BLE node is one of"),
    (["--no-rs485", "--ble-key", "{dir}/k", "--ble-adapter", "usb0"], KEY, "--ble-adapter 'usb0'"),
    (["--no-rs485", "--ble-key", "{dir}/k", "--unit", "0"], KEY, "--unit 0: a Modbus unit is 1..247"),
    (["--unit", "2", "--baud", "19200", "--ble-adapter", "hci0"], None, "--ble-adapter 'hci0': needs --ble-key"),
])
def test_bad_ble_requests_end_in_one_line_and_touch_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            args: list[str], key: str | None, words: str) -> None:
    keys = tmp_path / "keys"
    keys.mkdir()
    if key is not None:
        (keys / "k").write_text(key)
    work = tmp_path / "work"
    work.mkdir()
    # in this process (the console script's own entry point): refused before anything is built or touched
    code = main(["provision", *BASE, *[a.replace("{dir}", str(keys)) for a in args],
                 "--record", str(work / "provisioned.jsonl"), "--workdir", str(work / "build")])
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err and len(err.strip().splitlines()) == 1, err
    assert list(work.iterdir()) == []


@pytest.mark.slow
def test_a_meter_on_a_bus_and_a_radio_is_waited_for_on_both(tmp_path: Path) -> None:
    """A mains meter with a radio: it answers on its RS-485 drop and advertises; provisioning sees both."""
    street = VirtualStreet(tmp_path / "street", nodes=1, first_unit=9, role="meter")
    with RadioThread(street, {9: "meter"}, gatt_every=None) as thread, street:
        manifest = street.start()
        street.kill_node(9)
        wiring = {"uart": street.ports["drops"][0], "baud": street.baud, "seed": 9, **street.hardware[9]}
        console, link = start_console(tmp_path / "board", wiring)
        try:
            (tmp_path / "k").write_text(KEY)
            done = _provision("--port", str(link), "--board", "sim", "--role", "meter", "--node-id", "pit-9",
                              "--unit", "9", "--baud", str(street.baud), "--bus", manifest["buses"][0]["device"],
                              "--ble-key", str(tmp_path / "k"), "--ble-adapter", thread.radio.manifest()["adapter"],
                              cwd=tmp_path)
        finally:
            console.terminate()
            console.wait(10)
    assert done.returncode == 0, done.stderr
    assert "pit-9 answers as unit 9" in done.stdout and f"pit-9 advertises as {wiring['ble_address']}" in done.stdout
    record = json.loads((tmp_path / "provisioned.jsonl").read_text().splitlines()[-1])
    assert record["bus_checked"] is True and record["baud"] == street.baud
