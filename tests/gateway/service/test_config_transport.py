"""Configuration of Modbus TCP buses, per-node timeouts, HTTP and logging."""

from __future__ import annotations

import pytest

from gateway.service.config import ConfigError, parse_config

HEAD = 'site = "s"\ngateway = "g"\n'


def error_of(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(HEAD + text, source="config.toml")
    return str(info.value)


def test_tcp_bus_and_node_overrides() -> None:
    """A tcp bus takes host and port; nodes may override timeout and retries."""
    config = parse_config(HEAD + """
[[bus]]
name = "meters"
type = "tcp"
host = "127.0.0.1"
port = 5020
concurrency = 8
[[node]]
id = "m1"
bus = "meters"
unit = 1
role = "sdm630"
timeout = 1.5
retries = 0
""")
    bus = config.bus[0]
    assert (bus.type, bus.host, bus.port, bus.concurrency, bus.device) == ("tcp", "127.0.0.1", 5020, 8, "")
    assert (config.node[0].timeout, config.node[0].retries) == (1.5, 0)


def test_defaults_of_http_and_logging() -> None:
    """HTTP listens on loopback by default; logs are text at info."""
    config = parse_config(HEAD)
    assert (config.http.enabled, config.http.listen, config.http.port) == (True, "127.0.0.1", 9480)
    assert (config.logging.format, config.logging.level) == ("text", "info")
    assert config.bus == [] and config.node == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[bus]]\nname = "b"\n', "bus[0]: missing required key 'device' (an rtu bus is a serial line)"),
        ('[[bus]]\nname = "b"\ntype = "tcp"\n', "bus[0]: missing required key 'host'"),
        ('[[bus]]\nname = "b"\ntype = "tcp"\nhost = "h"\ndevice = "/dev/x"\n', "bus[0].device: only an rtu bus"),
        ('[[bus]]\nname = "b"\ndevice = "/dev/x"\nhost = "h"\n', "bus[0].host: only a tcp bus"),
        ('[[bus]]\nname = "b"\ntype = "udp"\n', "bus[0].type: expected one of 'rtu', 'tcp', got 'udp'"),
        ('[[bus]]\nname = "a"\ntype = "tcp"\nhost = "h"\n[[bus]]\nname = "b"\ntype = "tcp"\nhost = "h"\n',
         "bus[1].host: 'h:502' is already used by bus[0]"),
        ('[logging]\nformat = "xml"\n', "logging.format: expected one of 'json', 'text', got 'xml'"),
        ('[http]\nport = 70000\n', "http.port: expected an integer 0..65535, got 70000"),
        ('[[bus]]\nname = "b"\ndevice = "/d"\n[[node]]\nid = "n"\nbus = "b"\nunit = 1\ntimeout = 0\n',
         "node[0].timeout"),
    ],
)
def test_transport_mistakes_name_their_key(text: str, message: str) -> None:
    """Each mistake is reported with its key path."""
    assert message in error_of(text)
