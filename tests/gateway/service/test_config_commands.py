"""[commands] and [[key]] in the configuration: scopes resolved to nodes, mistakes named by key path."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.keys import KeyRing
from gateway.service.config import ConfigError, parse_config
from tools.fuzz import config as fuzz
from tools.keys import key_entry, public_text

PUB = public_text(Ed25519PrivateKey.generate())
BASE = (
    'site = "s"\ngateway = "g"\n[[bus]]\nname = "bus0"\ndevice = "/dev/a"\n[[bus]]\nname = "bus1"\ndevice = "/dev/b"\n'
    + "".join(f'[[node]]\nid = "lamp-{i}"\nbus = "bus{i // 3}"\nunit = {i % 3 + 1}\n' for i in range(6))
)
STATE = '[commands]\nreplay_db = "r.sqlite"\naudit_log = "a.jsonl"\n'
GROUPS = '[groups]\nelm = ["lamp-0", "lamp-1"]\n'


def load(extra: str) -> KeyRing:
    return KeyRing(parse_config(BASE + extra + GROUPS, source="t.toml"))


def problem(extra: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + extra + GROUPS, source="t.toml")
    return str(info.value)


def test_scopes_resolve_to_nodes_and_actions() -> None:
    """Groups, buses and node ids name nodes; '*' and 'all' name every node; '*' every action."""
    ring = load(STATE + key_entry("m", PUB, ["dim"], ["group:elm", "bus:bus1"]) + key_entry("o", PUB, ["*"], ["all"]))
    m, o = ring.get(b"m"), ring.get(b"o")
    assert m is not None and o is not None and ring.get(b"x") is None
    assert m.nodes == {"lamp-0", "lamp-1", "lamp-3", "lamp-4", "lamp-5"}
    assert m.actions == {"dim"}
    assert (o.nodes, o.actions) == (None, None)
    config = parse_config(BASE + GROUPS, source="t.toml")
    assert m.scope_problem("dim", config.node[:2]) is None
    assert "may not switch" in str(m.scope_problem("switch", config.node[:1]))
    assert "lamp-2" in str(m.scope_problem("dim", config.node))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (key_entry("m", PUB, ["dim"], ["all"]), "commands: missing 'replay_db'"),
        (STATE + key_entry("m", "AAAA", ["dim"], ["all"]), "key[0].public: an Ed25519 public key is 32 bytes"),
        (STATE + key_entry("m", "!!", ["dim"], ["all"]), "key[0].public"),
        (STATE + key_entry("m", PUB, ["dimm"], ["all"]), "unknown action 'dimm'; did you mean 'dim'?"),
        (STATE + key_entry("m", PUB, [], ["all"]), "key[0].actions: a key needs at least one action"),
        (STATE + key_entry("m", PUB, ["dim"], []), "key[0].targets: a key needs at least one target"),
        (STATE + key_entry("m", PUB, ["dim"], ["group:elmm"]), "unknown group 'elmm'; did you mean 'elm'?"),
        (STATE + key_entry("m", PUB, ["dim"], ["lamp-9"]), "key[0].targets[0]: unknown node 'lamp-9'"),
        (STATE + key_entry("m", PUB, ["dim"], ["room:1"]), "key[0].targets[0]: target 'room:1'"),
        (STATE + key_entry("m", PUB, ["dim"], ["all"]) * 2, "key[1].id: 'm' is already used by key[0]"),
        (STATE + '[[key]]\nid = "m"\npublic = "x"\nactions = ["dim"]\n', "key[0]: missing required key 'targets'"),
        ('[commands]\nclock_skew = -1\n', "commands.clock_skew: expected a number 0..3600"),
        ('[commands]\nmax_lifetim = 5\n', "did you mean 'max_lifetime'?"),
    ],
)
def test_mistakes_are_named_by_key_path(extra: str, message: str) -> None:
    """Each mistake in [commands] or [[key]] is reported with its path and what is wrong."""
    assert message in problem(extra)


def test_defaults_without_keys() -> None:
    """No keys: nothing to keep on disk is required; skew 30 s, lifetime an hour."""
    config = parse_config(BASE, source="t.toml")
    assert (config.commands.clock_skew, config.commands.max_lifetime, config.key) == (30.0, 3600.0, [])


def test_fuzz_small_run_only_accepts_or_refuses() -> None:
    """500 cases of the configuration fuzzer (python -m tools.fuzz.config runs 100,000)."""
    for summary in fuzz.run(500, seed=3).values():
        assert summary.crashes == [] and summary.hangs == []
        assert summary.accepted > 0 and summary.refused > 0
