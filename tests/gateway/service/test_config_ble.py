"""The [ble] section: nodes, keys and addresses checked, every mistake naming its key."""

from __future__ import annotations

import pytest

from gateway.service.config import ConfigError, parse_config

BASE = """
site = "s"
gateway = "g"
[[bus]]
name = "bus0"
device = "/dev/ttyUSB0"
[[node]]
id = "lamp-1"
bus = "bus0"
unit = 1
[ble]
counters = "/var/lib/streetedge/ble.sqlite"
"""
NODE = """
[[ble.node]]
id = "{id}"
address = "{address}"
key = "{key}"
role = "{role}"
"""
GOOD = {"id": "pit-7", "address": "A4:C1:38:00:11:22", "key": "00112233445566778899aabbccddeeff", "role": "meter"}


def text(*nodes: dict[str, str], base: str = BASE) -> str:
    return base + "".join(NODE.format(**{**GOOD, **n}) for n in nodes)


def test_a_good_section_parses() -> None:
    config = parse_config(text({}, {"id": "pole-8", "address": "a4:c1:38:00:11:23", "role": "env"}))
    assert [(n.id, n.normal_address, n.role) for n in config.ble.node] == [
        ("pit-7", "A4:C1:38:00:11:22", "meter"), ("pole-8", "A4:C1:38:00:11:23", "env")]
    assert config.ble.node[0].key_bytes == bytes.fromhex(GOOD["key"])
    assert config.ble.silent_intervals == 3


@pytest.mark.parametrize(("nodes", "message"), [
    (({"id": "lamp-1"},), "ble.node[0].id: 'lamp-1' is already used by node[0]"),
    (({}, {"address": "A4:C1:38:00:11:23"}), "ble.node[1].id: 'pit-7' is already used by ble.node[0]"),
    (({"address": "A4:C1:38:00:11"},), "ble.node[0].address: expected a BLE address like"),
    (({}, {"id": "p2", "address": "a4:c1:38:00:11:22"}), "ble.node[1].address: 'a4:c1:38:00:11:22' is already"),
    (({"key": "0011"},), "ble.node[0].key: expected 32 hex digits (a 16-byte AES key), got 4 characters"),
    (({"key": "zz" * 16},), "ble.node[0].key: expected 32 hex digits"),
    (({"role": "lamp"},), "ble.node[0].role: role 'lamp' does not advertise"),
    (({"role": "metre"},), "did you mean 'meter'?"),
])
def test_mistakes_name_their_key(nodes: tuple[dict[str, str], ...], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text(*nodes))
    assert message in str(err.value)


def test_nodes_need_a_counters_file_and_unknown_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"ble: missing 'counters': the replay windows must survive a restart"):
        parse_config(text({}, base=BASE.replace('counters = "/var/lib/streetedge/ble.sqlite"', "")))
    with pytest.raises(ConfigError, match=r"ble.node\[0\]: unknown key 'intervall'; did you mean 'interval'\?"):
        parse_config(text({}) + "intervall = 5\n")
    with pytest.raises(ConfigError, match=r"ble.node\[0\].interval"):
        parse_config(text({}) + "interval = 0\n")


@pytest.mark.parametrize(("adapter", "args"), [
    ("", {}), ("hci1", {"bluez": {"adapter": "hci1"}}), ("bumble:tcp-client:127.0.0.1:9001", {})])
def test_the_adapter_names_bluez_or_a_bumble_transport(adapter: str, args: dict[str, object]) -> None:
    """``[ble] adapter``: BlueZ's default, a BlueZ adapter by name (bleak's ``bluez`` argument), or a Bumble
    host on an HCI transport (its own bleak backends, made without opening anything)."""
    from gateway.transport.ble_adapter import BleRadio

    config = parse_config(BASE.replace("[ble]\n", f'[ble]\nadapter = "{adapter}"\n') + NODE.format(**GOOD))
    radio = BleRadio(config.ble.adapter)
    assert radio.args == args
    assert (radio.scanner is not None, radio.client is not None) == (adapter.startswith("bumble:"),) * 2


@pytest.mark.parametrize(("adapter", "message"), [
    ("bumble:", "ble.adapter: 'bumble:' needs a transport"),
    ("/dev/hci0", "ble.adapter: expected a BlueZ adapter like 'hci0' or 'bumble:<transport>', got '/dev/hci0'"),
])
def test_a_wrong_adapter_names_its_key(adapter: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(BASE.replace("[ble]\n", f'[ble]\nadapter = "{adapter}"\n'))
    assert message in str(err.value)
