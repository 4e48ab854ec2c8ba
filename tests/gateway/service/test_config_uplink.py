"""[broker] URLs and TLS, [delivery]: parsing, defaults, and the examples in examples/gateway.toml."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.service.config import ConfigError, load_config, parse_config
from gateway.service.config_uplink import BrokerUrl, parse_url

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "gateway.toml"
MINIMAL = 'site = "s"\ngateway = "g"\n'


def test_urls_parse_with_their_default_ports() -> None:
    assert parse_url("mqtt://broker") == BrokerUrl("broker", 1883, False)
    assert parse_url("mqtts://broker") == BrokerUrl("broker", 8883, True)
    assert parse_url("mqtts://10.0.0.1:9999") == BrokerUrl("10.0.0.1", 9999, True)
    assert str(parse_url("mqtts://b")) == "mqtts://b:8883"


def test_the_example_enables_the_durable_compact_path() -> None:
    config = load_config(EXAMPLE)
    d = config.delivery
    assert (d.outbox, d.profile, d.batch_interval, d.drain_rate) == ("/var/lib/streetedge/outbox.db", "compact",
                                                                      60.0, 50.0)


def test_the_commented_failover_and_tls_lines_of_the_example_are_valid() -> None:
    """What the example shows in comments (a URL list, a tls table) is accepted as written."""
    text = EXAMPLE.read_text()
    lines = [m.group(1) for m in re.finditer(r"^#   ((?:url|tls) = .*)$", text, re.MULTILINE)]
    assert len(lines) == 2
    config = parse_config(MINIMAL + "[broker]\n" + "\n".join(lines) + "\n")
    assert config.broker.urls == ["mqtts://broker-a.city.example:8883", "mqtts://broker-b.city.example:8883"]
    assert config.broker.tls.cert == "/etc/streetedge/gateway.pem"
    assert (config.broker.host, config.broker.port) == ("broker-a.city.example", 8883)


def test_delivery_defaults_are_the_compact_profile_in_a_temporary_outbox() -> None:
    d = parse_config(MINIMAL).delivery
    assert (d.outbox, d.profile, d.synchronous, d.budget_mb) == ("", "compact", "FULL", 256.0)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[delivery]\nprofile = "json"\n', "delivery.profile: expected one of 'compact', 'senml'"),
        ("[delivery]\ndrain_rate = 0\n", "delivery.drain_rate"),
        ("[delivery]\nbatch_intervall = 5\n", "did you mean 'batch_interval'"),
        ('[broker]\ntls = { ca = "x", crt = "y" }\n', "did you mean 'cert'"),
    ],
)
def test_mistakes_are_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(MINIMAL + text)
