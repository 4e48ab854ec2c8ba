"""``[analytics]`` in the gateway configuration: tunable and switchable per node class, errors naming the key."""

from __future__ import annotations

import pytest

from gateway.service.config import ConfigError, parse_config

HEAD = 'site = "s"\ngateway = "g"\n'


def test_defaults_and_tuning_per_class() -> None:
    default = parse_config(HEAD).analytics
    assert default.enabled and default.lamp.driver.drift == 0.05 and default.meter.night_flow.nights == 3
    tuned = parse_config(HEAD + "[analytics.lamp.driver]\ndrift = 0.08\n[analytics.env]\nenabled = false\n"
                         "[analytics.meter.stuck]\nenabled = false\n").analytics
    assert tuned.lamp.driver.drift == 0.08 and not tuned.env.enabled and not tuned.meter.stuck.enabled
    assert tuned.meter.night_flow.enabled  # the rest keeps its defaults


@pytest.mark.parametrize(("text", "message"), [
    ("[analytics.lamp.driver]\ndrift = 5\n", "analytics.lamp.driver.drift: expected a number 0.005..1.0, got 5"),
    ("[analytics.lamp.drivr]\n", "analytics.lamp: unknown key 'drivr'; did you mean 'driver'?"),
    ("[analytics.meter.night_flow]\nnights = 'x'\n", "analytics.meter.night_flow.nights: expected an integer"),
    ("[analytics]\nutc_offset_hours = 20\n", "analytics.utc_offset_hours: expected a number -14..14"),
])
def test_a_bad_value_is_refused_with_its_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(HEAD + text, source="gw.toml")
    assert str(info.value).startswith("gw.toml: " + message)
