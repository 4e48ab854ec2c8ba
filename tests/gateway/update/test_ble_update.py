"""Updates over BLE GATT against the real meter firmware on the virtual radio.

One BLE meter (heap 128K plus its image, code in its ROM partition) with a provisioned update key; the
gateway's GATT client on the Bumble backend delivers signed packages through the node's GATT service.
The node stages, checks and switches with the code of an update over its bus. By default: refusals and a
transfer cut short and resumed (images refused at COMMIT, no reset); ``-m slow``: a real image through a
power cut of the node, resumed, switched to and confirmed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from street_kit import prepare

from gateway.commands.parse import CommandRejected, check_command
from gateway.commands.router import CommandRouter
from gateway.commands.update_action import UpdateAction
from gateway.service.config import parse_config
from gateway.service.config_ble import BleNodeConfig
from gateway.service.stats import GatewayStats
from gateway.transport.ble_bus import GattBus, command_nodes
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_window import ReplayWindows
from gateway.update.ble_deliver import deliver_ble
from gateway.update.deliver import UpdateRefused
from gateway.update.package import UpdatePackage, make_package
from tests.gateway.update.update_kit import KEY, Supervisor, running_image, variant
from tools.cli import main as cli_main
from tools.keys import key_entry, public_text
from tools.operator import Signer, build_command
from tools.sim.bleak_bumble import client_backend
from tools.sim.code_slots import read_state
from tools.sim.radio import VirtualRadio
from tools.sim.radio_hci import HciPort, adapter_setting
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

BLE_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
ADDRESS = "D0:5E:00:00:00:41"
NODE = BleNodeConfig(id="pit-41", address=ADDRESS, key=BLE_KEY, role="meter", interval=0.3)
OPS = Signer(Ed25519PrivateKey.generate(), "ops")
HEAP = "128K"  # the ESP32 budget; the street adds the ROMFS image's size (flash on a chip)


class _Cut(Exception):  # noqa: N818 - the transfer's interruption, raised from its progress report
    pass


def _package(image: bytes, key: bytes = KEY) -> UpdatePackage:
    return make_package(image, key=key, role="meter", board="sim", health_s=4)


class _Corrupted(UpdatePackage):
    """A package whose header names other bytes than those sent."""

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.image + b"!").digest()


class _Meter:
    """The BLE meter on the virtual radio, its supervisor, and the gateway's GATT client."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.radio = VirtualRadio()
        self.host = RadioHost(self.radio)
        self.street = VirtualStreet(tmp_path / "street", nodes=1, role="meter", heapsize=HEAP)
        prepare(self.street, 1, {"unit": 1, "role": "meter", "baud": 19200, "sample_ms": 100},
                {"water": {"mode": "off"}})
        self.flash = self.street.node(1).flash
        (self.flash / "node.key").write_bytes(KEY)
        (self.flash / "ble.json").write_text(json.dumps({"key": BLE_KEY, "interval_ms": 300, "burst_ms": 100}))
        self.windows = ReplayWindows(tmp_path / "ble.sqlite")
        self.sender = GattSender(self.windows, backend=client_backend(self.radio), attempt_timeout=5)

    def run(self, steps: Any) -> None:
        async def main() -> None:
            port = await self.host.start()
            self.street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": ADDRESS, "diag_ms": 300}
            try:
                await asyncio.to_thread(self.street.start)
                with Supervisor(self.street):
                    await steps()
            finally:
                await asyncio.to_thread(self.street.stop)
                await self.host.stop()
                self.windows.close()

        asyncio.run(main())

    async def cut_then_resume(self, package: UpdatePackage, **kwargs: Any) -> tuple[int, int, Any]:
        """Deliver ``package``, cut once half of it is sent, then again; (bytes sent before the cut, the second
        delivery's first progress report, its outcome)."""
        sent: list[int] = []

        def cut(phase: str, done: int, total: int) -> None:
            sent.append(done)
            if done >= total // 2:
                raise _Cut

        with pytest.raises(_Cut):
            await deliver_ble(self.sender, NODE, package, progress=cut)
        resumed: list[int] = []
        try:
            outcome: Any = await deliver_ble(self.sender, NODE, package, back_within=90, progress=lambda p, d, t: (
                resumed.append(d) if p == "sending" else None), **kwargs)
        except UpdateRefused as exc:
            outcome = exc
        return sent[-1], resumed[0], outcome


def test_a_transfer_cut_short_resumes_and_bad_images_are_refused(tmp_path: Path) -> None:
    """An unsigned image is refused at COMMIT; a corrupted one, cut at half and delivered again, goes on from
    where the node stands (not from byte 0) and is refused for its hash; no reset, the old image kept."""
    meter = _Meter(tmp_path)
    seen: dict[str, Any] = {}

    async def steps() -> None:
        old = running_image(meter.street)
        small = b"\xd2\xcd\x31" + bytes(range(256)) * 2 + b"\x00"  # 516 bytes: three chunks
        with pytest.raises(UpdateRefused, match="BLE node pit-41 refused the image: bad MAC"):
            await deliver_ble(meter.sender, NODE, _package(small, key=b"another key"), back_within=60)
        image = bytes(i * 7 % 251 for i in range(12_000))  # three flash blocks
        seen["cut"], seen["resumed"], seen["outcome"] = await meter.cut_then_resume(_Corrupted(**vars(_package(image))))
        seen["same"] = running_image(meter.street) == old

    meter.run(steps)
    # "sending" is reported after each chunk: the second delivery's first report is one chunk past where it began
    assert seen["resumed"] - 240 == seen["cut"] > 0
    assert isinstance(seen["outcome"], UpdateRefused) and seen["outcome"].reason == "bad hash"
    assert "BLE node pit-41 refused the image: bad hash" in str(seen["outcome"])
    assert seen["same"]
    assert read_state(meter.flash) == {"active": 0, "trial": False, "tries": 0}


@pytest.mark.slow
def test_a_real_image_goes_over_gatt_through_a_power_cut_and_is_confirmed(tmp_path: Path) -> None:
    """The meter's image with a marker file; the node's power is cut (SIGKILL) half-way: it boots again, the
    same delivery goes on from the node's last whole flash block, the node switches to partition 1 and
    confirms the image."""
    meter = _Meter(tmp_path)
    seen: dict[str, Any] = {"reports": []}

    async def steps() -> None:
        old = running_image(meter.street)
        new = variant(meter.street, tmp_path, tag="ble")

        def progress(phase: str, done: int, total: int) -> None:
            if phase == "sending":
                seen["reports"].append(done)
                if "cut" not in seen and done >= total // 2:
                    seen["cut"] = done
                    meter.street.kill_node(1)  # the supervisor powers it up again

        seen["status"] = await deliver_ble(meter.sender, NODE, _package(new), progress=progress, back_within=90)
        seen["old"], seen["new"], seen["running"] = old, hashlib.sha256(new).hexdigest(), running_image(meter.street)

    meter.run(steps)
    reports, cut = seen["reports"], seen["cut"]
    after = reports[reports.index(cut) + 1:]
    back = min(after) - 240  # where the delivery went on after the cut (reports come after each chunk)
    assert cut - 4096 - 240 < back < cut  # the torn block again, not the whole image
    assert seen["running"] == seen["new"] != seen["old"]
    assert seen["status"]["active"] == 1 and not seen["status"]["trial"]
    assert read_state(meter.flash) == {"active": 1, "trial": False, "tries": 0, "rolled_back": 0}


def test_update_send_to_ble_nodes_refuses_what_cannot_be_rolled_out(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """``update send --ble-config --nodes``: a node not in the configuration, or a mix with a bus: one line each."""
    config = tmp_path / "gateway.toml"
    config.write_text(f'site = "s"\ngateway = "g"\n[ble]\ncounters = "{tmp_path / "ble.sqlite"}"\n'
                      f'[[ble.node]]\nid = "pit-41"\naddress = "{ADDRESS}"\nkey = "{BLE_KEY}"\nrole = "meter"\n')
    package = tmp_path / "meter.update"
    package.write_bytes(_package(b"\xd2\xcd\x31\x00").to_bytes())
    base = ["update", "send", "--package", str(package)]
    for extra, says in ((["--ble-config", str(config), "--nodes", "pit-41,pit-9"],
                         "--nodes 'pit-41,pit-9': pit-9 not among the [[ble.node]]"),
                        (["--ble-config", str(config), "--nodes", "pit-41", "--bus", "/dev/null"],
                         "a BLE roll-out takes --ble-config and --nodes (and no --bus nor --units)"),
                        (["--units", "1"], "a roll-out on a line takes --bus and --units")):
        assert cli_main(base + extra) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ble.sqlite").exists()  # refused before anything was opened


def test_update_send_reaches_ble_nodes_through_the_configurations_adapter(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``update send --ble-config`` uses the configuration's ``[ble] adapter`` as the daemon does: here the
    virtual radio's HCI port (a Bumble host in the command's process). The meter takes the chunks and refuses
    the image signed with another key at COMMIT, which the command reports and exits on."""
    meter = _Meter(tmp_path)
    package = tmp_path / "meter.update"
    small = b"\xd2\xcd\x31" + bytes(range(256)) * 2 + b"\x00"
    package.write_bytes(_package(small, key=b"another key").to_bytes())
    seen: dict[str, Any] = {}

    async def steps() -> None:
        hci = HciPort(meter.radio)
        config = tmp_path / "gateway.toml"
        config.write_text(f'site = "s"\ngateway = "g"\n[ble]\nadapter = "{adapter_setting(await hci.start())}"\n'
                          f'counters = "{tmp_path / "cli-ble.sqlite"}"\n[[ble.node]]\nid = "pit-41"\n'
                          f'address = "{ADDRESS}"\nkey = "{BLE_KEY}"\nrole = "meter"\n')
        try:
            seen["code"] = await asyncio.to_thread(cli_main, [
                "update", "send", "--package", str(package), "--ble-config", str(config), "--nodes", "pit-41",
                "--canaries", "0", "--id", "u-ble", "--json"])
        finally:
            await hci.stop()
        seen["same"] = read_state(meter.flash)

    meter.run(steps)
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert seen["code"] == 1, events
    assert any(e["phase"] == "sending" and e["node"] == "pit-41" and e["done"] > 0 for e in events), events
    failed = next(e for e in events if e["phase"] == "failed")
    assert failed["node"] == "pit-41" and "refused the image: bad MAC" in failed["detail"], failed
    assert seen["same"] == {"active": 0, "trial": False, "tries": 0}, "the old image kept"


def _router_config(tmp_path: Path, packages: Path) -> str:
    return f"""site = "s"
gateway = "g"
[commands]
replay_db = "{tmp_path / 'replay.sqlite'}"
audit_log = "{tmp_path / 'audit.jsonl'}"
{key_entry("ops", public_text(OPS.key), ["update"], ["*"])}
[update]
packages = "{packages}"
[ble]
counters = "{tmp_path / 'ble.sqlite'}"
[[ble.node]]
id = "pit-41"
address = "{ADDRESS}"
key = "{BLE_KEY}"
role = "meter"
"""


def test_a_signed_update_command_rolls_out_to_a_ble_node_over_gatt(tmp_path: Path) -> None:
    """The operator's signed ``update`` names a BLE node: the router plans it (a BLE node is a line of the
    roll-out), the node takes the chunks over GATT and refuses the image signed with another key at COMMIT;
    the result names the node and the refusal, the progress went out on the result topic, the store ended it."""
    meter = _Meter(tmp_path)
    packages = tmp_path / "packages"
    packages.mkdir()
    small = b"\xd2\xcd\x31" + bytes(range(256)) * 2 + b"\x00"
    package = _package(small, key=b"another key")
    (packages / "meter.update").write_bytes(package.to_bytes())
    config = parse_config(_router_config(tmp_path, packages))
    published: list[dict[str, Any]] = []
    seen: dict[str, Any] = {}

    async def steps() -> None:
        router = CommandRouter(config, {}, GatewayStats(), lambda p: published.append(cbor2.loads(p)),
                               ble_bus=GattBus(config.ble, meter.sender))
        try:
            params = {"package": package.digest.hex(), "canary": [], "stop_on_failure": True}
            seen["result"] = await router.handle(OPS.sign(build_command("pit-41", "update", params, "u-ble")))
            seen["stored"] = router.updates.store.get("u-ble")
        finally:
            router.close()
        seen["state"] = read_state(meter.flash)

    meter.run(steps)
    result = seen["result"]
    assert (result["status"], result["unconfirmed"]) == ("failed", ["pit-41"]), result
    assert "refused the image: bad MAC" in result["detail"], result
    phases = [(p.get("phase"), p.get("node")) for p in published if p.get("status") == "running"]
    assert ("sending", "pit-41") in phases and ("failed", "pit-41") in phases, phases
    assert seen["stored"].state == "finished" and seen["stored"].nodes["pit-41"].state == "failed"
    assert seen["state"] == {"active": 0, "trial": False, "tries": 0}, "the old image kept"


def test_without_a_ble_radio_the_update_command_refuses_ble_nodes(tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    packages.mkdir()
    package = _package(b"\xd2\xcd\x31\x00")
    (packages / "meter.update").write_bytes(package.to_bytes())
    config = parse_config(_router_config(tmp_path, packages))
    action = UpdateAction(config, {}, lambda p: None)  # a router without a GATT bus has no BLE targets
    command = check_command(build_command("pit-41", "update", {"package": package.digest.hex(), "canary": [],
                                                               "stop_on_failure": True}, "u-1"))
    (node,) = command_nodes(config.ble)
    with pytest.raises(CommandRejected, match="pit-41: bus ble:gatt carries no file records"):
        action.plan(command, [node], lambda t: [])
    action.close()
