"""The COSE layer: the standard examples verify, any flipped bit is refused, pycose agrees both ways,
and the structural rules (protected algorithm, no crit, no detached payload) hold."""

from __future__ import annotations

import json
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pycose.algorithms import EdDSA, Es256
from pycose.headers import KID, Algorithm
from pycose.keys import EC2Key, OKPKey
from pycose.keys.curves import P256, Ed25519
from pycose.messages import Sign1Message

from gateway.commands import cose
from tools.fuzz import cose as fuzz
from tools.fuzz.cose import VECTORS, vector_cases


def vectors() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(VECTORS.glob("*.json"))]


def keyed_verifiers() -> list[tuple[bytes, dict[bytes | None, fuzz.Verifier]]]:
    """Each example and its verifier, found by kid as the gateway finds keys (Mac0 examples carry none)."""
    out = []
    for (data, verify), vec in zip(vector_cases(), vectors(), strict=False):
        kid = b"11" if "sign0" in vec["input"] else None
        out.append((data, {kid: verify}))
    return out


def open_message(data: bytes, verifiers: dict[bytes | None, fuzz.Verifier]) -> None:
    msg = cose.decode_sign1(data) if data[:1] == b"\xd2" else cose.decode_mac0(data)
    verify = verifiers.get(msg.kid)
    if verify is None:
        raise cose.CoseError("unknown_key", "no such kid")
    verify(msg)


def test_the_four_standard_examples_verify_with_the_documented_intermediates() -> None:
    """Sign1 EdDSA and ES256, Mac0 HS256 and HS256/64: the to-be-signed bytes match, the proofs verify."""
    assert len(vectors()) == 4
    for (data, verifiers), vec in zip(keyed_verifiers(), vectors(), strict=True):
        open_message(data, verifiers)
        msg = cose.decode_sign1(data) if data[:1] == b"\xd2" else cose.decode_mac0(data)
        tbs = vec["intermediates"].get("ToBeSign_hex") or vec["intermediates"]["ToMac_hex"]
        assert msg.to_be_signed().hex().upper() == tbs
        assert msg.payload == b"This is the content."


def test_every_flipped_bit_of_every_example_is_refused() -> None:
    """Each bit of each example flipped in turn: decode, key lookup by kid or verification refuses it."""
    flips = 0
    for data, verifiers in keyed_verifiers():
        for bit in range(len(data) * 8):
            bad = bytearray(data)
            bad[bit // 8] ^= 1 << (bit % 8)
            with pytest.raises(cose.CoseError):
                open_message(bytes(bad), verifiers)
            flips += 1
    assert flips > 2000


def test_pycose_and_the_gateway_agree_both_ways() -> None:
    """Messages signed by pycose verify here; messages signed here verify in pycose (EdDSA and ES256)."""
    ed = Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    ed_pub = ed.public_key().public_bytes_raw()
    nums = p256.public_key().public_numbers()
    pycose_keys = [
        (ed, EdDSA, OKPKey(crv=Ed25519, x=ed_pub, d=ed.private_bytes_raw())),
        (p256, Es256, EC2Key(crv=P256, x=nums.x.to_bytes(32, "big"), y=nums.y.to_bytes(32, "big"),
                             d=p256.private_numbers().private_value.to_bytes(32, "big"))),
    ]
    for ours, alg, theirs in pycose_keys:
        msg = Sign1Message(phdr={Algorithm: alg}, uhdr={KID: b"op"}, payload=b"dim 40", key=theirs)
        decoded = cose.decode_sign1(msg.encode())
        cose.verify_sign1(decoded, ours.public_key())
        assert (decoded.kid, decoded.payload) == (b"op", b"dim 40")

        signed = cose.sign1(b"switch off", ours, b"me")
        parts = list(cbor2.loads(signed).value)
        parts[1] = dict(parts[1])  # pycose 1.1 wants a dict where cbor2 6 gives an immutable map
        back = Sign1Message.from_cose_obj(parts, True)
        back.key = theirs
        assert back.verify_signature()


def test_structural_rules() -> None:
    """Unprotected alg, crit, detached payloads, untagged or wrongly tagged messages are refused."""
    key = Ed25519PrivateKey.generate()
    good = cbor2.loads(cose.sign1(b"x", key, b"k")).value
    protected, _, payload, signature = good

    def kind(parts: Any, tag: int = 18) -> str:
        with pytest.raises(cose.CoseError) as info:
            cose.decode_sign1(cbor2.dumps(cbor2.CBORTag(tag, parts)))
        return info.value.kind

    assert kind([protected, {1: -8, 4: b"k"}, payload, signature]) == cose.BAD_ALGORITHM
    assert kind([cbor2.dumps({1: -8, 2: [99]}), {}, payload, signature]) == cose.MALFORMED
    assert kind([protected, {4: b"k"}, None, signature]) == cose.MALFORMED
    assert kind([protected, {4: b"k"}, payload]) == cose.MALFORMED
    assert kind([protected, [], payload, signature]) == cose.MALFORMED
    assert kind([protected, {4: "k"}, payload, signature]) == cose.MALFORMED
    assert kind([protected, {4: b"k"}, payload, signature], tag=17) == cose.NOT_COSE
    with pytest.raises(cose.CoseError) as info:
        cose.decode_sign1(cbor2.dumps([protected, {}, payload, signature]))
    assert info.value.kind == cose.NOT_COSE


def test_algorithm_substitution_is_refused() -> None:
    """A message claiming ES256 is not checked with an Ed25519 key (and vice versa): bad_algorithm."""
    ed = Ed25519PrivateKey.generate()
    p256 = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(cose.CoseError) as info:
        cose.verify_sign1(cose.decode_sign1(cose.sign1(b"x", p256)), ed.public_key())
    assert info.value.kind == cose.BAD_ALGORITHM
    with pytest.raises(cose.CoseError) as info:
        cose.verify_sign1(cose.decode_sign1(cose.sign1(b"x", ed)), p256.public_key())
    assert info.value.kind == cose.BAD_ALGORITHM


def test_mac0_round_trip_and_truncated_tag() -> None:
    """mac0() output verifies; HS256/64 tags are 8 bytes; the wrong key or algorithm is refused."""
    secret = b"k" * 32
    for alg in (cose.ALG_HS256, cose.ALG_HS256_64):
        msg = cose.decode_mac0(cose.mac0(b"hello", secret, alg, kid=b"n1"))
        cose.verify_mac0(msg, secret, alg)
        assert len(msg.proof) == (8 if alg == cose.ALG_HS256_64 else 32)
        with pytest.raises(cose.CoseError):
            cose.verify_mac0(msg, b"j" * 32, alg)
    with pytest.raises(cose.CoseError):
        cose.verify_mac0(cose.decode_mac0(cose.mac0(b"x", secret, cose.ALG_HS256)), secret, cose.ALG_HS256_64)


def test_fuzz_small_run_only_accepts_or_refuses() -> None:
    """1,000 cases of each part of the COSE fuzzer (python -m tools.fuzz.cose runs 100,000)."""
    parts = fuzz.run(1000, seed=5)
    for summary in parts.values():
        assert summary.crashes == [] and summary.hangs == []
        assert summary.accepted > 0 and summary.refused > 0
