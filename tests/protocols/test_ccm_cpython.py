"""protocols.ccm against the ``cryptography`` package's AESCCM on thousands of random cases; CPython only.

The vectors the MicroPython run checks (vectors/ccm_random.jsonl, one case a line so that a 128K heap reads it) are made
here, from a seed, by AESCCM: :func:`test_vector_file_is_reproduced_by_aesccm`
fails if the file and the library part ways.
"""

import json
import random
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from protocols.ccm import AesCcm
from protocols.errors import AuthenticationError, ProtocolError

VECTORS = Path(__file__).parent / "vectors" / "ccm_random.jsonl"
_VECTOR_SEED = 12
_VECTOR_COUNT = 120


def _case(rnd: random.Random) -> tuple[bytes, int, bytes, bytes, bytes]:
    key = rnd.randbytes(rnd.choice((16, 16, 32)))
    tag = rnd.choice((4, 4, 6, 8, 10, 12, 14, 16))
    nonce = rnd.randbytes(rnd.randint(7, 13))
    plaintext = rnd.randbytes(rnd.choice((0, 1, 15, 16, 17, 31, 32, 33, rnd.randint(0, 80))))
    aad = rnd.randbytes(rnd.choice((0, 0, 1, 13, 14, 15, 30, rnd.randint(0, 60))))
    return key, tag, nonce, plaintext, aad


def make_vectors(seed: int = _VECTOR_SEED, count: int = _VECTOR_COUNT) -> list[dict[str, object]]:
    """Random cases sealed by AESCCM: key, tag length, nonce, plaintext, aad, sealed (hex)."""
    rnd = random.Random(seed)
    out: list[dict[str, object]] = []
    for _ in range(count):
        key, tag, nonce, plaintext, aad = _case(rnd)
        sealed = AESCCM(key, tag_length=tag).encrypt(nonce, plaintext, aad or None)
        out.append({"key": key.hex(), "tag": tag, "nonce": nonce.hex(), "plaintext": plaintext.hex(),
                    "aad": aad.hex(), "sealed": sealed.hex()})
    return out


def test_vector_file_is_reproduced_by_aesccm() -> None:
    """The MicroPython vectors are exactly what AESCCM gives for their seed."""
    assert [json.loads(line) for line in VECTORS.read_text().splitlines()] == make_vectors()


@pytest.mark.parametrize("seed", range(4))
def test_seal_and_open_match_aesccm_on_random_cases(seed: int) -> None:
    """4 x 1,000 random keys, nonces, tags, messages and aad: same bytes as AESCCM, and it opens ours."""
    rnd = random.Random(seed)
    for _ in range(1000):
        key, tag, nonce, plaintext, aad = _case(rnd)
        reference = AESCCM(key, tag_length=tag)
        ours = AesCcm(key, tag)
        sealed = ours.encrypt(nonce, plaintext, aad)
        assert sealed == reference.encrypt(nonce, plaintext, aad or None)
        assert reference.decrypt(nonce, sealed, aad or None) == plaintext
        assert ours.decrypt(nonce, sealed, aad) == plaintext


def test_any_flipped_bit_is_refused_like_aesccm() -> None:
    """Every single-bit change of sealed data, nonce or aad fails authentication in both implementations."""
    rnd = random.Random(99)
    key, nonce, aad = rnd.randbytes(16), rnd.randbytes(13), rnd.randbytes(5)
    plaintext = rnd.randbytes(21)
    reference, ours = AESCCM(key, tag_length=4), AesCcm(key, 4)
    sealed = ours.encrypt(nonce, plaintext, aad)
    variants = []
    for i in range(len(sealed) * 8):
        bad = bytearray(sealed)
        bad[i // 8] ^= 1 << (i % 8)
        variants.append((nonce, bytes(bad), aad))
    for i in range(len(nonce) * 8):
        bad = bytearray(nonce)
        bad[i // 8] ^= 1 << (i % 8)
        variants.append((bytes(bad), sealed, aad))
    variants.append((nonce, sealed, aad + b"x"))
    for n, s, a in variants:
        with pytest.raises(InvalidTag):
            reference.decrypt(n, s, a)
        out = bytearray(b"\xaa" * len(plaintext))
        with pytest.raises(AuthenticationError):
            ours.open_into(n, s, out, a)
        assert out == bytes(len(plaintext)), "unauthenticated plaintext left in the caller's buffer"


def test_bad_parameters_are_refused_with_a_precise_error() -> None:
    """Key, tag and nonce lengths outside CCM's are ProtocolErrors saying which."""
    with pytest.raises(ProtocolError, match="AES key of 15 bytes"):
        AesCcm(bytes(15))
    with pytest.raises(ProtocolError, match="CCM tag of 5 bytes"):
        AesCcm(bytes(16), 5)
    with pytest.raises(ProtocolError, match="CCM nonce of 6 bytes"):
        AesCcm(bytes(16)).encrypt(bytes(6), b"x")
    with pytest.raises(AuthenticationError, match="shorter than the tag"):
        AesCcm(bytes(16)).decrypt(bytes(13), b"abc")
    with pytest.raises(ProtocolError, match="too long for a 13-byte nonce"):
        AesCcm(bytes(16)).encrypt(bytes(13), bytes(65536))


if __name__ == "__main__":  # regenerate the vector file
    VECTORS.write_text("".join(json.dumps(case) + "\n" for case in make_vectors()))
