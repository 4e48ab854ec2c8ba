"""COSE_Sign1 and COSE_Mac0 (RFC 9052): strict decoding, verification and signing.

The message structures are small CBOR arrays; every cryptographic operation is
done by the ``cryptography`` package (Ed25519, ECDSA P-256 with SHA-256,
HMAC-SHA-256). What this module adds is the COSE structure around them::

    COSE_Sign1 = 18([protected: bstr, unprotected: map, payload: bstr, signature: bstr])
    signed bytes = CBOR ["Signature1", protected, external_aad, payload]

    COSE_Mac0  = 17([protected: bstr, unprotected: map, payload: bstr, tag: bstr])
    MACed bytes  = CBOR ["MAC0", protected, external_aad, payload]

Why not pycose: its latest release (1.1.0) cannot decode any message with
cbor2 6 (which returns tuples and immutable maps inside tags) and pulls in
oscrypto and certvalidator; the tests still use it as an independent encoder.

Rules enforced on every message (RFC 9052 section 3 and 4):

- the algorithm is taken from the *protected* header only, and must be the one
  the key is for (no algorithm substitution; an unprotected ``alg`` is refused);
- a ``crit`` header is refused (this module understands no extension);
- detached payloads (nil) are refused;
- ES256 signatures are the 64-byte ``r || s`` form, not DER.

:func:`decode_sign1` and :func:`decode_mac0` return a message or raise
:class:`CoseError`; ``verify_*`` return None or raise :class:`CoseError`;
nothing else escapes for any input.
"""

from __future__ import annotations

import hmac as std_hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from gateway.commands.strict_cbor import CborError, loads_strict
from gateway.errors import GatewayError

SIGN1_TAG = 18
MAC0_TAG = 17

HDR_ALG = 1
HDR_CRIT = 2
HDR_KID = 4

ALG_EDDSA = -8
ALG_ES256 = -7
ALG_HS256 = 5
ALG_HS256_64 = 4
ALG_NAMES = {ALG_EDDSA: "EdDSA", ALG_ES256: "ES256", ALG_HS256: "HS256", ALG_HS256_64: "HS256/64"}
"""Algorithm names by COSE identifier (IANA COSE Algorithms registry)."""

MAX_MESSAGE = 8192
"""Largest message decoded, in bytes."""

NOT_COSE = "not_cose"
"""Kind of CoseError: CBOR, but not a message of the expected type (no tag 18 / 17)."""
MALFORMED = "malformed"
"""Kind of CoseError: the bytes or the structure are broken."""
BAD_ALGORITHM = "bad_algorithm"
"""Kind of CoseError: no protected algorithm, an unsupported one, or not the key's."""
BAD_SIGNATURE = "bad_signature"
"""Kind of CoseError: the signature or MAC does not verify."""

PublicKey = Ed25519PublicKey | ec.EllipticCurvePublicKey
PrivateKey = Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class CoseError(GatewayError, ValueError):
    """A message that cannot be used; ``kind`` is one of the kinds above."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class CoseMessage:
    """A decoded COSE_Sign1 or COSE_Mac0 (not yet verified).

    Attributes:
        tag: 18 (Sign1) or 17 (Mac0).
        protected: the protected header exactly as received (it is what is signed).
        headers: the protected header, decoded.
        unprotected: the unprotected header.
        payload: the payload bytes.
        proof: the signature (Sign1) or MAC tag (Mac0).
    """

    tag: int
    protected: bytes
    headers: Mapping[Any, Any]
    unprotected: Mapping[Any, Any]
    payload: bytes
    proof: bytes

    @property
    def alg(self) -> int | None:
        """The protected algorithm identifier, or None."""
        alg = self.headers.get(HDR_ALG)
        return alg if isinstance(alg, int) and not isinstance(alg, bool) else None

    @property
    def kid(self) -> bytes | None:
        """The key id (protected header first, then unprotected), or None."""
        kid = self.headers.get(HDR_KID, self.unprotected.get(HDR_KID))
        return kid if isinstance(kid, bytes) else None

    def to_be_signed(self, external_aad: bytes = b"") -> bytes:
        """The bytes the signature or MAC covers (Sig_structure / MAC_structure)."""
        context = "Signature1" if self.tag == SIGN1_TAG else "MAC0"
        return cbor2.dumps([context, self.protected, external_aad, self.payload])


def decode_sign1(data: bytes) -> CoseMessage:
    """Decode a tagged COSE_Sign1; CoseError (NOT_COSE / MALFORMED / BAD_ALGORITHM) otherwise."""
    return _decode(data, SIGN1_TAG)


def decode_mac0(data: bytes) -> CoseMessage:
    """Decode a tagged COSE_Mac0; CoseError (NOT_COSE / MALFORMED / BAD_ALGORITHM) otherwise."""
    return _decode(data, MAC0_TAG)


def verify_sign1(msg: CoseMessage, key: PublicKey, external_aad: bytes = b"") -> None:
    """Check the signature of ``msg`` with ``key``; CoseError (BAD_ALGORITHM / BAD_SIGNATURE) if it fails."""
    if msg.tag != SIGN1_TAG:
        raise CoseError(NOT_COSE, "not a COSE_Sign1 message")
    expected = _alg_of(key)
    if msg.alg != expected:
        raise CoseError(
            BAD_ALGORITHM, f"signed with {_alg_name(msg.alg)}, the key is for {ALG_NAMES[expected]}"
        )
    tbs = msg.to_be_signed(external_aad)
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(msg.proof, tbs)
        else:
            if len(msg.proof) != 64:
                raise CoseError(BAD_SIGNATURE, f"ES256 signature of {len(msg.proof)} bytes, expected 64")
            r = int.from_bytes(msg.proof[:32], "big")
            s = int.from_bytes(msg.proof[32:], "big")
            key.verify(encode_dss_signature(r, s), tbs, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise CoseError(BAD_SIGNATURE, "signature does not verify") from None


def verify_mac0(msg: CoseMessage, key: bytes, alg: int = ALG_HS256, external_aad: bytes = b"") -> None:
    """Check the MAC of ``msg`` with the symmetric ``key`` for ``alg`` (HS256 or HS256/64)."""
    if msg.tag != MAC0_TAG:
        raise CoseError(NOT_COSE, "not a COSE_Mac0 message")
    if alg not in (ALG_HS256, ALG_HS256_64):
        raise CoseError(BAD_ALGORITHM, f"unsupported MAC algorithm {_alg_name(alg)}")
    if msg.alg != alg:
        raise CoseError(BAD_ALGORITHM, f"MACed with {_alg_name(msg.alg)}, the key is for {ALG_NAMES[alg]}")
    expected = _hmac256(key, msg.to_be_signed(external_aad))
    if alg == ALG_HS256_64:
        expected = expected[:8]
    if not std_hmac.compare_digest(expected, msg.proof):
        raise CoseError(BAD_SIGNATURE, "MAC does not verify")


def sign1(payload: bytes, key: PrivateKey, kid: bytes | None = None, external_aad: bytes = b"") -> bytes:
    """A tagged COSE_Sign1 of ``payload``: algorithm protected, ``kid`` in the unprotected header."""
    alg = _alg_of(key.public_key())
    protected = cbor2.dumps({HDR_ALG: alg})
    unprotected = {HDR_KID: kid} if kid is not None else {}
    tbs = cbor2.dumps(["Signature1", protected, external_aad, payload])
    if isinstance(key, Ed25519PrivateKey):
        signature = key.sign(tbs)
    else:
        r, s = decode_dss_signature(key.sign(tbs, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return cbor2.dumps(cbor2.CBORTag(SIGN1_TAG, [protected, unprotected, payload, signature]))


def mac0(payload: bytes, key: bytes, alg: int = ALG_HS256, kid: bytes | None = None) -> bytes:
    """A tagged COSE_Mac0 of ``payload`` with HS256 or HS256/64."""
    protected = cbor2.dumps({HDR_ALG: alg})
    unprotected = {HDR_KID: kid} if kid is not None else {}
    tag = _hmac256(key, cbor2.dumps(["MAC0", protected, b"", payload]))
    if alg == ALG_HS256_64:
        tag = tag[:8]
    return cbor2.dumps(cbor2.CBORTag(MAC0_TAG, [protected, unprotected, payload, tag]))


def _decode(data: bytes, tag: int) -> CoseMessage:
    if len(data) > MAX_MESSAGE:
        raise CoseError(MALFORMED, f"message of {len(data)} bytes (limit {MAX_MESSAGE})")
    name = "COSE_Sign1" if tag == SIGN1_TAG else "COSE_Mac0"
    try:
        item = loads_strict(bytes(data), top_tags=frozenset({SIGN1_TAG, MAC0_TAG}))
    except CborError as exc:
        kind = NOT_COSE if exc.tag is not None else MALFORMED
        raise CoseError(kind, str(exc)) from None
    if not isinstance(item, cbor2.CBORTag) or item.tag != tag:
        raise CoseError(NOT_COSE, f"expected a {name} (CBOR tag {tag})")
    parts = item.value
    if not isinstance(parts, list | tuple) or len(parts) != 4:
        raise CoseError(MALFORMED, f"{name} must be an array of 4 items")
    protected, unprotected, payload, proof = parts
    if not isinstance(protected, bytes):
        raise CoseError(MALFORMED, "protected header must be a byte string")
    if not isinstance(unprotected, Mapping):
        raise CoseError(MALFORMED, "unprotected header must be a map")
    if payload is None:
        raise CoseError(MALFORMED, "detached payloads are not accepted")
    if not isinstance(payload, bytes):
        raise CoseError(MALFORMED, "payload must be a byte string")
    if not isinstance(proof, bytes):
        raise CoseError(MALFORMED, "signature/tag must be a byte string")
    headers: Mapping[Any, Any] = {}
    if protected:  # an empty bstr stands for an empty map
        try:
            headers = loads_strict(protected)
        except CborError as exc:
            raise CoseError(MALFORMED, f"protected header: {exc}") from None
        if not isinstance(headers, Mapping):
            raise CoseError(MALFORMED, "protected header must encode a map")
    if HDR_CRIT in headers:
        raise CoseError(MALFORMED, "critical header parameters are not supported")
    if HDR_ALG in unprotected:
        raise CoseError(BAD_ALGORITHM, "the algorithm must be in the protected header")
    if set(headers) & set(unprotected):
        raise CoseError(MALFORMED, "a header label appears in both buckets")
    kid = headers.get(HDR_KID, unprotected.get(HDR_KID))
    if kid is not None and not isinstance(kid, bytes):
        raise CoseError(MALFORMED, "kid must be a byte string")
    return CoseMessage(tag, protected, headers, unprotected, payload, proof)


def _alg_of(key: PublicKey) -> int:
    if isinstance(key, Ed25519PublicKey):
        return ALG_EDDSA
    if isinstance(key.curve, ec.SECP256R1):
        return ALG_ES256
    raise CoseError(BAD_ALGORITHM, f"unsupported curve {key.curve.name}")


def _alg_name(alg: int | None) -> str:
    if alg is None:
        return "no protected algorithm"
    return ALG_NAMES.get(alg, f"algorithm {alg}")


def _hmac256(key: bytes, data: bytes) -> bytes:
    mac = crypto_hmac.HMAC(key, hashes.SHA256())
    mac.update(data)
    return mac.finalize()
