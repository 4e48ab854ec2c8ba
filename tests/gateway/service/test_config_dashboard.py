"""``[dashboard]`` in the configuration: defaults, and each cross-table rule with the key path it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.service.config import ConfigError, parse_config

BASE = '''site = "s"
gateway = "g"
[[bus]]
name = "bus0"
device = "/dev/null"
[[node]]
id = "lamp-1"
bus = "bus0"
unit = 1
[commands]
replay_db = "/tmp/r.sqlite"
audit_log = "/tmp/a.jsonl"
[[key]]
id = "page"
public = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
actions = ["dim"]
targets = ["all"]
'''
USER = '[[dashboard.user]]\nname = "ana"\npassword = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaA"\n'


def test_off_unless_enabled() -> None:
    config = parse_config(BASE)
    assert config.dashboard.enabled is False and config.dashboard.listen == "127.0.0.1"


def test_an_enabled_dashboard_parses(tmp_path: Path) -> None:
    config = parse_config(BASE + '[dashboard]\nenabled = true\nkey_id = "page"\nkey_file = "/k"\n' + USER)
    assert config.dashboard.user[0].name == "ana" and config.dashboard.key_id == "page"


@pytest.mark.parametrize(("table", "key", "problem"), [
    ('[dashboard]\nenabled = true\n', "dashboard", "at least one [[dashboard.user]]"),
    ('[dashboard]\nkey_id = "nobody"\nkey_file = "/k"\n' + USER, "dashboard.key_id", "no [[key]] with id 'nobody'"),
    ('[dashboard]\nkey_id = "page"\n' + USER, "dashboard", "key_id and key_file go together"),
    ('[dashboard]\ntls_cert = "/c.pem"\n' + USER, "dashboard", "tls_cert and tls_key go together"),
    ('[dashboard]\n[[dashboard.user]]\nname = "ana"\npassword = "hunter2"\n', "dashboard.user[0].password",
     "not an argon2 hash"),
    ("[dashboard]\n" + USER + USER, "dashboard.user[1].name", "'ana' is already used by dashboard.user[0]"),
    ('[dashboard]\nhistory_hours = 0\n', "dashboard.history_hours", ""),
    ('[dashboard]\nportt = 1\n', "dashboard", "portt"),
])
def test_problems_name_their_key(table: str, key: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + table)
    assert caught.value.key.startswith(key), caught.value
    assert problem in caught.value.problem
