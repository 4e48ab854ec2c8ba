"""Devices described only by profile files, end to end on the virtual street.

One RS-485 line (a socat pty pair) carries three devices simulated by
pymodbus from their profiles: the shipped Waveshare relay module (its first
input wired to its first relay's feedback contact), the shipped SDM120 meter,
and a water meter whose profile file sits beside the gateway's configuration
(a low-word-first counter, a scaled range, a valve coil). The gateway polls
them, publishes SenML-CBOR to Mosquitto, where an independent paho client
decodes what arrived, and carries out signed ``write`` commands on their coils
and registers; a command outside a profile is refused and writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pymodbus.server import ModbusSerialServer

from gateway.profiles import load_profile, shipped_profile
from gateway.service.config import load_config, parse_config
from gateway.service.daemon import Gateway
from protocols import senml
from tools.broker import free_port
from tools.keys import key_entry, public_text
from tools.operator import Signer, build_command
from tools.sim.profile_device import ProfileDevice, serve_devices

OPERATOR = Signer(Ed25519PrivateKey.generate(), "ops")

WATER = """
[device]
name = "water_street"
manufacturer = "Acme"
model = "W1 with Modbus output"
datasheet = "Acme W1 Modbus manual, rev. 3 (a device made up for this test)"

[[register]]
name = "volume"
function = "input"
address = 0
type = "u32"
word_order = "low_first"
scale = -3
unit = "m3"

[[register]]
name = "flow"
function = "input"
address = 2
type = "s16"
scale = -2
unit = "l/s"

[[register]]
name = "flow_limit"
function = "holding"
address = 0
type = "u16"
scale = -1
unit = "l/s"
writable = true
min = 0.5
max = 120.0

[[register]]
name = "valve"
function = "coil"
address = 0
writable = true

[[register]]
name = "leak"
function = "discrete_input"
address = 0
"""


def config_file(folder: Path, device: str, broker_url: str) -> Path:
    (folder / "profiles").mkdir()
    (folder / "profiles" / "water.toml").write_text(WATER)
    path = folder / "gateway.toml"
    path.write_text(f"""
site = "s"
gateway = "g"
[broker]
url = "{broker_url}"
keepalive = 10
[http]
enabled = false
[delivery]
profile = "senml"
[commands]
replay_db = "{folder / 'replay.sqlite'}"
audit_log = "{folder / 'audit.jsonl'}"
{key_entry("ops", public_text(OPERATOR.key), ["*"], ["*"])}
[[bus]]
name = "line"
device = "{device}"
parity = "N"
timeout = 0.5
retries = 2
[[node]]
id = "relays"
bus = "line"
unit = 1
role = "relay8"
interval = 0.2
[[node]]
id = "meter"
bus = "line"
unit = 2
role = "sdm120"
interval = 0.2
[[node]]
id = "water"
bus = "line"
unit = 3
profile = "profiles/water.toml"
interval = 0.2
""")
    return path


@contextlib.asynccontextmanager
async def line(path: str, devices: list[ProfileDevice]) -> AsyncIterator[None]:
    server = ModbusSerialServer([d.simdevice() for d in devices], port=path, baudrate=19200, parity="N")
    await server.serve_forever(background=True)
    try:
        yield
    finally:
        await server.shutdown()


def values(payload: bytes) -> dict[str, tuple[Any, str | None]]:
    """A SenML-CBOR pack -> (value, unit) by short name, resolved as RFC 8428 says."""
    records = senml.resolve(senml.from_labels(cbor2.loads(payload)))
    return {r["n"].rsplit(":", 1)[-1]: (r.get("v", r.get("vb")), r.get("u")) for r in records}


def command(cid: str, target: str, params: dict[str, Any]) -> bytes:
    return OPERATOR.sign(build_command(target, "write", params, cid))


def test_profile_devices_are_polled_published_and_commanded(
    mosquitto, pty_pair, subscriber, tmp_path: Path
) -> None:
    gw_end, node_end = pty_pair
    config = load_config(config_file(tmp_path, gw_end, mosquitto.url))
    gateway = Gateway(config)
    relays = ProfileDevice(1, shipped_profile("relay8"), {"relay_4": True, "input_8": True, "device_address": 1},
                           mirror={"input_1": "relay_1"})
    meter = ProfileDevice(2, shipped_profile("sdm120"), {"voltage": 229.5, "power": 1840.0, "import_energy": 17.25})
    water = ProfileDevice(3, load_profile(tmp_path / "profiles" / "water.toml"),
                          {"volume": 123456.789, "flow": -0.25, "flow_limit": 60.0})
    data = subscriber(mosquitto.host, mosquitto.port, "streetedge/v1/s/g/data/+")
    births = subscriber(mosquitto.host, mosquitto.port, "streetedge/v1/s/g/birth")
    results = subscriber(mosquitto.host, mosquitto.port, gateway.topics.result)

    async def latest(node: str, ready: Any = lambda v: True) -> dict[str, tuple[Any, str | None]]:
        msg = await data.wait(lambda m: m.topic == gateway.topics.data(node) and ready(values(m.payload)), within=60)
        return values(msg.payload)

    async def main() -> None:
        async with line(node_end, [relays, meter, water]):
            task = asyncio.create_task(gateway.run())
            try:
                got = await latest("relays")
                assert got["relay_4"] == (True, None) and got["relay_1"] == (False, None)
                assert got["input_8"] == (True, None) and got["input_1"] == (False, None)
                assert got["device_address"] == (1, None)
                assert len(got) == 17
                got = await latest("meter")
                assert got["voltage"] == (229.5, "V")
                assert got["power"] == (1840.0, "W")
                assert got["import_energy"] == (17.25, "kWh")
                got = await latest("water")
                assert got["volume"] == (123456.789, "m3")  # low word first on the wire
                assert got["flow"] == (-0.25, "l/s")
                assert got["flow_limit"] == (60.0, "l/s")
                assert got["valve"] == (False, None) and got["leak"] == (False, None)

                birth = cbor2.loads((await births.wait(lambda m: True, within=30)).payload)
                schemas = {s[0]: sid for sid, s in birth["schemas"].items()}
                assert {"relay8", "sdm120", "water_street"} <= set(schemas)
                assert "write:relay_1" in birth["capabilities"][schemas["relay8"]]
                assert birth["capabilities"][schemas["water_street"]] == ["write:flow_limit", "write:valve"]

                # Close relays 1 and 2 (one function-15 write); the module's feedback input follows relay 1.
                results.publish(gateway.topics.cmd, command("w-1", "relays", {"relay_1": True, "relay_2": True}))
                result = cbor2.loads((await results.wait(lambda m: True, within=60)).payload)
                assert (result["id"], result["status"], result["confirmed"]) == ("w-1", "done", ["relays"]), result
                assert relays.value("relay_1") is True and relays.value("relay_2") is True
                # A poll's requests are separate transactions and a command goes first between them: a poll
                # the write cut in two may show the coils before it and the inputs after. Wait for one wholly after.
                got = await latest("relays", lambda v: v["input_1"][0] is True and v["relay_1"][0] is True)
                assert got["relay_2"] == (True, None)

                # The user profile's coil and scaled register in one command.
                results.publish(gateway.topics.cmd, command("w-2", "water", {"valve": True, "flow_limit": 12.5}))
                result = cbor2.loads((await results.wait(lambda m: True, within=60)).payload)
                assert (result["id"], result["status"]) == ("w-2", "done"), result
                assert water.value("valve") is True and water.value("flow_limit") == 12.5
                got = await latest("water", lambda v: v["valve"][0] is True and v["flow_limit"][0] == 12.5)
                assert got["flow_limit"] == (12.5, "l/s") and got["leak"] == (False, None)

                # Outside the profile: refused before anything is written.
                writes = len(water.writes) + len(relays.writes)
                results.publish(gateway.topics.cmd, command("w-3", "water", {"flow_limit": 500.0}))
                result = cbor2.loads((await results.wait(lambda m: True, within=60)).payload)
                assert (result["id"], result["status"], result["reason"]) == ("w-3", "rejected", "bad_parameters")
                assert "flow_limit: 500.0 is outside 0.5..120.0" in result["detail"]
                results.publish(gateway.topics.cmd, command("w-4", "relays", {"input_3": True}))
                result = cbor2.loads((await results.wait(lambda m: True, within=60)).payload)
                assert (result["id"], result["status"], result["reason"]) == ("w-4", "rejected", "bad_parameters")
                assert len(water.writes) + len(relays.writes) == writes
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 30)

    asyncio.run(main())


def test_a_reload_adds_a_device_of_a_new_profile(mosquitto, subscriber, tmp_path: Path) -> None:
    """A profile file first named by a reloaded configuration: the device is polled and published as any other."""
    port = free_port()
    (tmp_path / "water.toml").write_text(WATER.replace('"water_street"', '"water_reload"'))
    head = (f'site = "s"\ngateway = "g"\n[broker]\nurl = "{mosquitto.url}"\nkeepalive = 10\n[http]\nenabled = false\n'
            f'[delivery]\nprofile = "senml"\n[[bus]]\nname = "tcp"\ntype = "tcp"\nhost = "127.0.0.1"\nport = {port}\n'
            '[[node]]\nid = "relays"\nbus = "tcp"\nunit = 1\nrole = "relay8"\ninterval = 0.2\n')
    added = '[[node]]\nid = "water"\nbus = "tcp"\nunit = 3\nprofile = "water.toml"\ninterval = 0.2\n'
    water = ProfileDevice(3, load_profile(tmp_path / "water.toml"), {"volume": 42.5, "flow": 1.5})
    data = subscriber(mosquitto.host, mosquitto.port, "streetedge/v1/s/g/data/+")

    async def main() -> None:
        async with serve_devices([ProfileDevice(1, shipped_profile("relay8")), water], port):
            gateway = Gateway(parse_config(head, source="gateway.toml", base=tmp_path))
            task = asyncio.create_task(gateway.run())
            try:
                await data.wait(lambda m: m.topic == gateway.topics.data("relays"), within=60)
                notes = await gateway.reload(parse_config(head + added, source="gateway.toml", base=tmp_path))
                assert notes == ["nodes of bus tcp changed"]
                msg = await data.wait(lambda m: m.topic == gateway.topics.data("water"), within=60)
                got = values(msg.payload)
                assert got["volume"] == (42.5, "m3") and got["flow"] == (1.5, "l/s")
                assert got["valve"] == (False, None)
            finally:
                gateway.stop()
                await asyncio.wait_for(task, 30)

    asyncio.run(main())
