"""Updates over BLE GATT against the real meter firmware on the virtual radio.

One BLE meter (heap 128K plus its image, code in its ROM partition) with a provisioned update key; the
gateway's GATT client on the Bumble backend delivers signed packages through the node's GATT service.
The node stages, checks and switches with the code of an update over its bus. Refusals first (small
images: refused at COMMIT without a reset), then a real image cut short, resumed, switched and confirmed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from street_kit import prepare

from gateway.service.config_ble import BleNodeConfig
from gateway.transport.ble_client import GattSender
from gateway.transport.ble_window import ReplayWindows
from gateway.update.ble_deliver import deliver_ble
from gateway.update.deliver import UpdateRefused
from gateway.update.package import UpdatePackage, make_package
from tests.gateway.update.update_kit import KEY, Supervisor, running_image, variant
from tools.cli import main as cli_main
from tools.sim.bleak_bumble_client import client_backend
from tools.sim.code_slots import read_state
from tools.sim.radio import VirtualRadio
from tools.sim.radio_host import RadioHost
from tools.sim.street import VirtualStreet

BLE_KEY = "2b7e151628aed2a6abf7158809cf4f3c"
ADDRESS = "D0:5E:00:00:00:41"
NODE = BleNodeConfig(id="pit-41", address=ADDRESS, key=BLE_KEY, role="meter", interval=0.3)
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


def test_an_image_goes_over_gatt_resumes_after_a_cut_and_bad_ones_are_refused(tmp_path: Path) -> None:
    radio = VirtualRadio()
    host = RadioHost(radio)
    street = VirtualStreet(tmp_path / "street", nodes=1, role="meter", heapsize=HEAP)
    prepare(street, 1, {"unit": 1, "role": "meter", "baud": 19200, "sample_ms": 100}, {"water": {"mode": "off"}})
    flash = street.node(1).flash
    (flash / "node.key").write_bytes(KEY)
    (flash / "ble.json").write_text(json.dumps({"key": BLE_KEY, "interval_ms": 300, "burst_ms": 100}))
    windows = ReplayWindows(tmp_path / "ble.sqlite")
    sender = GattSender(windows, backend=client_backend(radio), attempt_timeout=5)
    seen: dict[str, Any] = {}

    async def main() -> None:
        port = await host.start()
        street.hardware[1] = {"radio": f"127.0.0.1:{port}", "ble_address": ADDRESS, "diag_ms": 300}
        try:
            await asyncio.to_thread(street.start)
            with Supervisor(street):
                old = running_image(street)
                small = b"\xd2\xcd\x31" + bytes(range(256)) * 2 + b"\x00"  # 516 bytes: three chunks
                for bad, reason in ((_package(small, key=b"another key"), "bad MAC"),
                                    (_Corrupted(**vars(_package(small))), "bad hash")):
                    with pytest.raises(UpdateRefused, match=f"BLE node pit-41 refused the image: {reason}"):
                        await deliver_ble(sender, NODE, bad, back_within=60)
                assert running_image(street) == old
                new = variant(street, tmp_path, tag="ble")
                sent: list[int] = []

                def cut(phase: str, done: int, total: int) -> None:
                    sent.append(done)
                    if done >= total // 3:
                        raise _Cut

                with pytest.raises(_Cut):
                    await deliver_ble(sender, NODE, _package(new), progress=cut)
                resumed_from: list[int] = []
                seen["status"] = await deliver_ble(
                    sender, NODE, _package(new), back_within=90,
                    progress=lambda p, d, t: resumed_from.append(d) if p == "sending" else None)
                seen["cut_at"], seen["resumed_from"] = sent[-1], resumed_from[0]
                seen["old"], seen["new"] = old, hashlib.sha256(new).hexdigest()
                seen["running"] = running_image(street)
                seen["state"] = read_state(flash)
        finally:
            await asyncio.to_thread(street.stop)
            await host.stop()
            windows.close()

    asyncio.run(main())
    # the second delivery went on from where the node's staging stood, not from byte 0
    assert 0 < seen["resumed_from"] <= seen["cut_at"] + 2 * 240
    assert seen["running"] == seen["new"] != seen["old"]
    assert seen["status"]["active"] == 1 and not seen["status"]["trial"]
    assert seen["state"] == {"active": 1, "trial": False, "tries": 0, "rolled_back": 0}


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
