"""The hex examples in docs/upstream.md are what the code produces and accepts."""

from __future__ import annotations

import re
from pathlib import Path

import cbor2

from gateway.commands import parse_command
from gateway.records import build_pack, encode_pack
from protocols import senml
from protocols.regmap import HOLDING, INPUT
from protocols.roles import load

DOC = Path(__file__).resolve().parents[2] / "docs" / "upstream.md"


def examples() -> list[bytes]:
    """Every ```hex block of the page, in order."""
    return [bytes.fromhex(h) for h in re.findall(r"```hex\n([0-9a-f]+)\n```", DOC.read_text())]


def test_page_has_its_four_examples() -> None:
    assert len(examples()) == 4


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
    assert command.id == "c-0001"
    assert cbor2.loads(examples()[1]) == {"id": "c-0001", "target": "group:elm-street", "action": "dim", "level": 40}


def test_result_and_state_examples_decode_as_documented() -> None:
    assert cbor2.loads(examples()[2])["status"] == "done"
    assert cbor2.loads(examples()[3]) == {"online": True, "ts": 1798761600.0}
