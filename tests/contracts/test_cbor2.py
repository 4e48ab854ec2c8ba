"""What the gateway's encoders rely on from cbor2.

``canonical=True`` defines the bytes of SenML packs (gateway/delivery/senml_encoder.py splices
per-value canonical encodings into precomputed prefixes) and the schema ids of births
(gateway/delivery/birth.py hashes canonical CBOR): a change in either would change bytes on the wire
and the ids consumers cache. gateway/commands/strict_cbor.py relies on the decoder's stream handling.
"""

from __future__ import annotations

import io
import math

import cbor2
import pytest


def canonical(obj: object) -> str:
    return cbor2.dumps(obj, canonical=True).hex()


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (1.5, "f93e00"),  # half precision when exact
        (2.0, "f94000"),  # a whole float stays a float, in its shortest width
        (-0.0, "f98000"),
        (65504.0, "f97bff"),  # the largest half
        (5.960464477539063e-08, "f90001"),  # the smallest half (subnormal)
        (100000.0, "fa47c35000"),  # single when exact, not half
        (3.4028234663852886e38, "fa7f7fffff"),
        (0.1, "fb3fb999999999999a"),  # double when nothing shorter is exact
        (math.inf, "f97c00"),
        (math.nan, "f97e00"),
    ],
)
def test_canonical_floats_take_the_shortest_exact_width(value: float, encoded: str) -> None:
    assert canonical(value) == encoded
    decoded = cbor2.loads(bytes.fromhex(encoded))
    assert isinstance(decoded, float)
    assert decoded == value or (math.isnan(value) and math.isnan(decoded))


@pytest.mark.parametrize(
    ("value", "encoded"),
    [(0, "00"), (23, "17"), (24, "1818"), (255, "18ff"), (256, "190100"), (65536, "1a00010000"),
     (2**32, "1b0000000100000000"), (-1, "20"), (-24, "37"), (-25, "3818")],
)
def test_canonical_integers_take_the_shortest_head(value: int, encoded: str) -> None:
    assert canonical(value) == encoded


def test_canonical_maps_sort_the_senml_labels_whatever_the_insertion_order() -> None:
    """The order senml_encoder.py writes by hand: n (0), u (1), v (2), vb (4), bn (-2), bt (-3)."""
    labels = {-3: 0, -2: 0, 4: 0, 2: 0, 1: 0, 0: 0}
    assert canonical(labels) == "a6" + "".join(key + "00" for key in ("00", "01", "02", "04", "21", "22"))


def test_canonical_map_order_is_length_first_then_bytewise() -> None:
    """cbor2 sorts keys shorter-encoding first (RFC 7049's canonical order): -1 (0x20) before 24 (0x18 0x18).

    RFC 8949's bytewise order would put 24 first. The two agree on every key the encoders use (one-byte
    labels, short text), but birth schema ids hash these bytes, so the order itself is pinned here.
    """
    assert canonical({24: 0, -1: 0}) == "a2" + "2000" + "181800"
    assert canonical({"aa": 2, "b": 1}) == "a2" + "616201" + "62616102"
    assert canonical({"x": [1, {"b": 1, "a": 2}]}) == "a16178" + "8201" + "a2616102616201"  # nested maps too


def test_plain_dumps_keeps_insertion_order() -> None:
    """Without canonical=True maps keep their order (compact packs and status messages rely on nothing more)."""
    assert cbor2.dumps({"b": 1, "a": 2}).hex() == "a2616201616102"


def test_the_decoder_reads_one_item_and_leaves_the_stream_after_it() -> None:
    """strict_cbor.py finds trailing bytes with ``tell()`` after one ``CBORDecoder.decode()``."""
    stream = io.BytesIO(bytes.fromhex("a10102" + "ff00"))
    assert cbor2.CBORDecoder(stream).decode() == {1: 2}
    assert stream.tell() == 3


@pytest.mark.parametrize("data", ["a1", "5f", "f818", "1c"])
def test_malformed_input_raises_cbor_decode_error(data: str) -> None:
    """Truncated items, a simple value in two bytes, a reserved head: CBORDecodeError, never a wrong value."""
    with pytest.raises(cbor2.CBORDecodeError):
        cbor2.loads(bytes.fromhex(data))


def test_cose_tags_stay_tags_and_known_tags_become_objects() -> None:
    """Tags 17 and 18 (COSE_Mac0, COSE_Sign1) decode as CBORTag; tag 1 becomes a datetime, which
    strict_cbor.py rejects as not plain data."""
    sign1 = cbor2.loads(bytes.fromhex("d28101"))
    assert isinstance(sign1, cbor2.CBORTag) and (sign1.tag, list(sign1.value)) == (18, [1])
    assert not isinstance(cbor2.loads(bytes.fromhex("c11a514b67b0")), cbor2.CBORTag)
