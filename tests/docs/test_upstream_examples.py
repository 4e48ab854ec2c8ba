"""The hex examples in docs/upstream.md are what the code produces and accepts."""

from __future__ import annotations

import re
from pathlib import Path

import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands.envelope import open_envelope
from gateway.commands.keys import KeyRing
from gateway.commands.parse import REASONS, parse_command
from gateway.delivery import birth, compact
from gateway.delivery.birth import Field, NodeSchema, schema_id
from gateway.delivery.senml_records import build_pack, encode_pack
from gateway.service.config import parse_config
from protocols import cbor, senml
from protocols.regmap import HOLDING, INPUT
from protocols.roles import load
from tools.keys import key_entry, public_text
from tools.operator import Signer

DOC = Path(__file__).resolve().parents[2] / "docs" / "upstream.md"


def examples() -> list[bytes]:
    """Every ```hex block of the page, in order."""
    return [bytes.fromhex(h) for h in re.findall(r"```hex\n([0-9a-f]+)\n```", DOC.read_text())]


RFC8032_KEY_1 = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"


def test_page_has_its_eleven_examples() -> None:
    assert len(examples()) == 11


def test_data_example_is_what_the_gateway_builds() -> None:
    """The SenML example is byte for byte the gateway's encoding of the documented poll."""
    lamp = load("lamp")
    readings = lamp.decode(HOLDING, 0, [40, 1]) + lamp.decode(
        INPUT, 0, [0, 1234, 415, 2301, 190, 0, 15320, 312, 1, 0, 3600, 1, 0x100]
    )
    built = encode_pack(build_pack("district-7", "lamp-1", 1798761600.25, readings))
    assert examples()[0] == built
    records = {r["n"]: r for r in senml.resolve(senml.from_labels(cbor2.loads(built)))}
    assert records["urn:dev:streetedge:district-7:lamp-1:power"]["v"] == 41.5
    assert records["urn:dev:streetedge:district-7:lamp-1:power"]["u"] == "W"


def test_command_example_parses() -> None:
    command = parse_command(examples()[1])
    assert (command.id, command.action, dict(command.params)) == ("c-0001", "dim", {"level": 40})
    assert cbor2.loads(examples()[1]) == {"id": "c-0001", "iat": 1798761600, "exp": 1798761660,
                                          "target": "group:elm-street", "action": "dim", "params": {"level": 40}}


def test_envelope_example_is_what_the_operator_tool_signs_and_the_gateway_opens() -> None:
    """Ed25519 is deterministic: signing the documented command with RFC 8032 key 1 gives the documented bytes."""
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(RFC8032_KEY_1))
    assert Signer(key, "maint-elm").sign(cbor2.loads(examples()[1])) == examples()[2]
    # the payload is in core deterministic CBOR: the same bytes however the map was built
    shuffled = dict(reversed(list(cbor2.loads(examples()[1]).items())))
    assert Signer(key, "maint-elm").sign(shuffled) == examples()[2]
    assert cbor.dumps(cbor2.loads(examples()[1]), True) == examples()[1]
    assert cbor.dumps(cbor2.loads(examples()[10]), True) == examples()[10]
    assert public_text(key) in DOC.read_text()
    config = parse_config(
        'site = "d7"\ngateway = "c12"\n[[bus]]\nname = "bus0"\ndevice = "/dev/null"\n'
        + "".join(f'[[node]]\nid = "lamp-{i}"\nbus = "bus0"\nunit = {i}\n' for i in (1, 2))
        + '[commands]\nreplay_db = "r"\naudit_log = "a"\n'
        + key_entry("maint-elm", public_text(key), ["dim"], ["group:elm-street"])
        + '[groups]\nelm-street = ["lamp-1", "lamp-2"]\n'
    )
    opened = open_envelope(examples()[2], KeyRing(config), now=1798761610, skew=30, max_lifetime=3600)
    assert opened.key.id == "maint-elm" and opened.command.id == "c-0001"


def test_result_and_state_examples_decode_as_documented() -> None:
    assert cbor2.loads(examples()[3])["status"] == "done"
    refused = cbor2.loads(examples()[4])
    assert (refused["status"], refused["reason"]) == ("rejected", "out_of_scope")
    assert examples()[5] == birth.state(online=True, session=7, ts=1798761600.0)
    assert birth.state(online=False, session=7).hex() in DOC.read_text()  # the Will, inline


def test_every_reason_code_is_documented() -> None:
    """The page's table lists exactly the reason codes the gateway uses."""
    text = DOC.read_text()
    for reason, meaning in REASONS.items():
        assert f"| `{reason}` | {meaning} |" in text


# The birth and compact examples use a lamp schema abridged to four fields (the page says so).
_FIELDS = (Field("dim_level", "%", 0, "u16"), Field("relay", None, 0, "bool"), Field("seq", None, 0, "u32"),
           Field("power", "W", -1, "u16"))
_SCHEMA = NodeSchema("lamp", _FIELDS, schema_id(["lamp", [list(f) for f in _FIELDS]]))


def _gateway_birth() -> bytes:
    return birth.encode(birth.gateway_birth(
        site="district-7", gateway="cabinet-12", session=7, ts=1798761600.0, profile="compact",
        nodes=[("lamp-1", _SCHEMA), ("lamp-2", _SCHEMA)],
        capabilities={_SCHEMA.id: ["events", "write:dim_level", "write:relay"]},
    ))


def test_birth_examples_are_what_the_gateway_builds() -> None:
    assert examples()[6] == _gateway_birth()
    node = birth.node_birth(node="lamp-1", schema=_SCHEMA, session=7, seq=1, ts=1798761600.0, firmware=0x0100)
    assert examples()[7] == birth.encode(node)
    assert cbor2.loads(examples()[6])["birth"].hex() == "b096c948"
    assert _SCHEMA.id.hex() == "7dda1e18"


def test_compact_example_is_what_the_gateway_builds_and_reads_as_documented() -> None:
    gateway_birth = cbor2.loads(_gateway_birth())
    rows = [compact.Row(0, 1798761600250, [40, 1, 1234, 415]), compact.Row(1, 1798761601500, [40, 1, 98765, 412]),
            compact.Row(0, 1798761660250, [40, 1, 1294, 416]), compact.Row(1, 1798761661500, [40, 1, 98825, 413])]
    assert examples()[8] == compact.encode(rows, gateway_birth, seq=3)
    records = [r for pack in compact.to_senml(examples()[8], gateway_birth) for r in senml.resolve(pack)]
    power = [(r["n"].split(":")[-2], r["t"], r["v"]) for r in records if r["n"].endswith(":power")]
    assert power == [("lamp-1", 1798761600.25, 41.5), ("lamp-1", 1798761660.25, 41.6),
                     ("lamp-2", 1798761601.5, 41.2), ("lamp-2", 1798761661.5, 41.3)]


def test_delivery_counters_example_decodes_as_documented() -> None:
    counters = cbor2.loads(examples()[9])
    assert counters["dropped"] == {"readings": 120, "events": 0}
    assert counters["stored"] == 52113 and counters["depth"] == 0


def test_schedule_command_example_parses_into_the_documented_words() -> None:
    """The set_schedule example is a valid command, and the gateway writes the words the page lists."""
    from gateway.commands import lamp_schedule

    command = parse_command(examples()[10])
    assert (command.id, command.action, str(command.target)) == ("c-0003", "set_schedule", "group:elm-street")
    assert dict(command.params) == {
        "programs": {"0": [[2, 0, 100], [0, 1380, 50], [1, 0, 0]], "1": [[2, 0, 100], [1, 0, 0]]},
        "calendar": {"default": 0, "rules": [{"program": 1, "days": 48}]},
    }
    writes = lamp_schedule.writes(command.params)
    assert writes == [(200, (0, 3, 2, 0, 100, 0, 1380, 50, 1, 0, 0)), (200, (1, 2, 2, 0, 100, 1, 0, 0)),
                      (250, (0, 1, 48) + (0,) * 30)]
    page = DOC.read_text()
    for address, words in writes[:2]:
        assert f"{address}: {', '.join(map(str, words))} " in page
