"""The normaliser: register words -> SenML pack -> SenML-CBOR, decoded back with protocols.senml."""

from __future__ import annotations

import cbor2

from gateway.contracts import HOLDING, INPUT, load_role
from gateway.delivery.senml_records import base_name, build_pack, encode_pack
from gateway.mqtt.topics import Topics
from gateway.polling.poller import decode
from protocols import senml

LAMP = load_role("lamp")


def lamp_blocks() -> dict[int, tuple[int, list[int]]]:
    values = {
        "dim_level": 40, "relay": 1, "seq": 70001, "power": 415, "voltage": 2301, "current": 181,
        "energy": 123456, "temperature": -55, "status": 1, "uptime": 3600, "role": 1, "firmware": 256,
    }
    blocks = {}
    for table in (HOLDING, INPUT):
        ((start, count),) = LAMP.blocks(table)
        words = [0] * count
        for reg in LAMP.registers:
            if reg.table == table:
                for i, w in enumerate(reg.words(values.get(reg.name, reg.minimum))):
                    words[reg.address - start + i] = w
        blocks[table] = (start, words)
    return blocks


def test_pack_has_one_record_per_register_with_base_name_and_time() -> None:
    """First record carries bn/bt; names, units and engineering values come from the map."""
    pack = build_pack("district-7", "lamp-1", 1767225600.25, decode(LAMP, lamp_blocks()))
    assert len(pack) == len(LAMP.registers)
    assert pack[0]["bn"] == "urn:dev:streetedge:district-7:lamp-1:"
    assert pack[0]["bt"] == 1767225600.25
    assert all("bn" not in r and "bt" not in r for r in pack[1:])
    by_name = {r["n"]: r for r in pack}
    assert by_name["dim_level"] == {"bn": base_name("district-7", "lamp-1"), "bt": 1767225600.25,
                                    "n": "dim_level", "u": "%", "v": 40}
    assert by_name["relay"] == {"n": "relay", "vb": True}
    assert by_name["seq"] == {"n": "seq", "v": 70001}
    assert by_name["power"] == {"n": "power", "u": "W", "v": 41.5}
    assert by_name["current"] == {"n": "current", "u": "A", "v": 0.181}
    assert by_name["temperature"] == {"n": "temperature", "u": "Cel", "v": -5.5}
    assert "u" not in by_name["status"]


def test_cbor_round_trip_through_senml() -> None:
    """encode_pack gives SenML-CBOR that protocols.senml reads back and resolves."""
    pack = build_pack("district-7", "lamp-1", 1767225600.25, decode(LAMP, lamp_blocks()))
    data = encode_pack(pack)
    back = senml.from_labels(cbor2.loads(data))
    assert back == pack
    resolved = {r["n"]: r for r in senml.resolve(back)}
    assert resolved["urn:dev:streetedge:district-7:lamp-1:power"]["v"] == 41.5
    assert resolved["urn:dev:streetedge:district-7:lamp-1:seq"]["t"] == 1767225600.25
    # Integer labels on the wire (RFC 8428 section 6): compact.
    assert set(cbor2.loads(data)[0]) == {-2, -3, 0, 1, 2}
    assert len(data) < 25 * len(pack)  # 245 bytes for the 12 lamp registers when written


def test_topics_live_under_one_root() -> None:
    """Every topic of a gateway hangs off streetedge/v1/<site>/<gateway>."""
    t = Topics("district-7", "cabinet-12")
    assert t.root == "streetedge/v1/district-7/cabinet-12"
    assert t.state == t.root + "/state"
    assert t.cmd == t.root + "/cmd"
    assert t.result == t.root + "/result"
    assert t.data("lamp-1") == t.root + "/data/lamp-1"
