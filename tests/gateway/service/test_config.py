"""Configuration loading: the example parses; every kind of mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.service.config import ConfigError, load_config, parse_config

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gateway.toml"

MINIMAL = """
site = "district-7"
gateway = "cabinet-12"
[[bus]]
name = "bus0"
device = "/dev/ttyUSB0"
[[node]]
id = "lamp-1"
bus = "bus0"
unit = 1
[[node]]
id = "lamp-2"
bus = "bus0"
unit = 2
"""


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(text, source="config.toml")
    return str(info.value)


def test_example_parses_with_every_key() -> None:
    """examples/gateway.toml is a valid configuration and means what it says."""
    config = load_config(EXAMPLE)
    assert config.site == "district-7"
    assert config.gateway == "cabinet-12"
    assert config.broker.host == "127.0.0.1"
    assert config.broker.port == 1883
    assert config.broker.protocol == "5"
    assert config.broker.client_id == "streetedge-district-7-cabinet-12"
    bus = config.bus_named("bus0")
    assert (bus.baud, bus.parity, bus.stopbits, bus.timeout, bus.retries) == (19200, "N", 1, 0.3, 1)
    assert [n.id for n in config.nodes_on("bus0")] == ["lamp-1", "lamp-2"]
    assert config.groups == {"street-a": ["lamp-1", "lamp-2"]}


def test_defaults_fill_what_is_left_out() -> None:
    """A minimal file gets the documented defaults."""
    config = parse_config(MINIMAL)
    assert config.broker.url == "mqtt://127.0.0.1:1883"
    assert config.broker.keepalive == 30
    assert config.node[0].role == "lamp"
    assert config.node[0].interval == 1.0
    assert config.bus[0].parity == "E"


def test_explicit_client_id_and_port_are_kept() -> None:
    """A client id and a port in the URL are used as given."""
    text = MINIMAL + '[broker]\nurl = "mqtt://broker.example:2883"\nclient_id = "me"\nprotocol = "3.1.1"\n'
    config = parse_config(text)
    assert (config.broker.host, config.broker.port) == ("broker.example", 2883)
    assert config.broker.client_id == "me"
    assert config.broker.protocol == "3.1.1"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("unit = 2", "unit = 300"), "config.toml: node[1].unit: expected an integer 1..247, got 300"),
        (("unit = 2", "unit = true"), "node[1].unit: expected an integer 1..247, got true"),
        (("unit = 2", 'unit = "2"'), "node[1].unit: expected an integer 1..247, got '2'"),
        (('device = "/dev/ttyUSB0"', 'device = "/dev/ttyUSB0"\nparity = "X"'),
         "bus[0].parity: expected one of 'E', 'N', 'O', got 'X'"),
        (('device = "/dev/ttyUSB0"', 'device = "/dev/ttyUSB0"\ntimeout = 0'),
         "bus[0].timeout: expected a number > 0 and <= 30, got 0"),
        (('site = "district-7"', 'site = "district 7"'),
         "site: expected a name of letters, digits, '_' and '-'"),
        (('gateway = "cabinet-12"', 'gateway = "cab/12"'), "gateway: expected a name"),
        (('site = "district-7"\n', ""), "config.toml: missing required key 'site'"),
        (("unit = 1\n", ""), "node[0]: missing required key 'unit'"),
        (("[[bus]]", 'groups = ["a"]\n[[bus]]'), "config.toml: groups: expected a table, got a list"),
        (("[[bus]]", "bus = 3\n[[node]]\nid = 'x'\nbus = 'b'\nunit = 3\n[[bus]]"), "config.toml: not valid TOML"),
    ],
)
def test_each_kind_of_error_names_its_key(change: tuple[str, str], expected: str) -> None:
    """Wrong types, ranges, patterns and missing keys are reported with their key path."""
    old, new = change
    assert old in MINIMAL
    assert expected in error_of(MINIMAL.replace(old, new, 1))


def test_unknown_key_suggests_the_close_one() -> None:
    """A misspelt key is named, with the key it probably meant."""
    message = error_of(MINIMAL.replace("unit = 1", "unit = 1\nintervall = 2"))
    assert message == "config.toml: node[0]: unknown key 'intervall'; did you mean 'interval'?"
    message = error_of(MINIMAL + "[brokr]\nurl = 'mqtt://x'\n")
    assert message == "config.toml: unknown key 'brokr'; did you mean 'broker'?"
    assert "unknown key 'colour'" in error_of(MINIMAL + "[broker]\ncolour = 1\n")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ('[[node]]\nid = "lamp-1"\nbus = "bus0"\nunit = 3\n', "node[2].id: 'lamp-1' is already used by node[0]"),
        ('[[node]]\nid = "lamp-3"\nbus = "bus0"\nunit = 2\n',
         "node[2].unit: unit 2 on bus 'bus0' is already node[1] ('lamp-2')"),
        ('[[node]]\nid = "lamp-3"\nbus = "bus1"\nunit = 3\n',
         "node[2].bus: unknown bus 'bus1'; did you mean 'bus0'? (declared: bus0)"),
        ('[[node]]\nid = "lamp-3"\nbus = "bus0"\nunit = 3\nrole = "lmap"\n',
         "node[2].role: unknown role 'lmap'; did you mean 'lamp'? (known: lamp"),
        ('[[bus]]\nname = "bus0"\ndevice = "/dev/ttyUSB1"\n', "bus[1].name: 'bus0' is already used by bus[0]"),
        ('[[bus]]\nname = "bus1"\ndevice = "/dev/ttyUSB0"\n',
         "bus[1].device: '/dev/ttyUSB0' is already used by bus[0]"),
        ('[groups]\nstreet-a = ["lamp-1", "lamp-3"]\n',
         "groups.street-a[1]: unknown node 'lamp-3'; did you mean"),
        ('[groups]\n"street a" = ["lamp-1"]\n', "groups.street a: expected a name"),
        ('[broker]\nurl = "http://broker:8883"\n',
         "broker.url: expected mqtt://host[:port] or mqtts://host[:port], got 'http://broker:8883'"),
        ('[broker]\nurl = ["mqtt://a", "mqtt://b:x"]\n', "broker.url[1]: bad port"),
        ('[broker]\nurl = []\n', "broker.url: give at least one broker URL"),
        ('[broker]\nurl = "mqtts://b"\ntls = { cert = "c.pem" }\n', "broker.tls: give both cert and key"),
        ('[broker]\nurl = "mqtt://b"\ntls = { ca = "ca.pem" }\n', "broker.tls: TLS files are given but no URL"),
        ('[broker]\nurl = "mqtt://:1883"\n', "broker.url: expected mqtt://host[:port]"),
        ('[broker]\nurl = "mqtt://broker:99999"\n', "broker.url: bad port"),
        ('[broker]\nprotocol = "3"\n', "broker.protocol: expected one of '3.1.1', '5', got '3'"),
        ('[broker]\nprotocol = 5\n', "broker.protocol: expected one of '3.1.1', '5', got 5"),
    ],
)
def test_cross_field_rules(extra: str, expected: str) -> None:
    """Ids and addresses are unique, references resolve, the broker URL is usable."""
    assert expected in error_of(MINIMAL + extra)


def test_bad_toml_names_the_file_and_line() -> None:
    """A TOML syntax error is a ConfigError with the parser's line and column."""
    message = error_of('site = "x"\ngateway = \n')
    assert message.startswith("config.toml: not valid TOML:")
    assert "line 2" in message


def test_missing_file_is_named(tmp_path: Path) -> None:
    """A configuration file that is not there is reported by path."""
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: no such configuration file"):
        load_config(path)


def test_unreadable_file_is_named(tmp_path: Path) -> None:
    """A directory (or any unreadable path) is reported by path, not with a traceback."""
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(tmp_path)


def test_config_error_is_a_value_error() -> None:
    """Callers may catch ValueError."""
    assert issubclass(ConfigError, ValueError)
