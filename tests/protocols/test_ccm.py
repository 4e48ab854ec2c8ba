# common-subset
"""protocols.ccm on both interpreters: the seeded AESCCM vectors, refusals, no plaintext left on a bad tag."""
import binascii
import json

from expect import _here, raises

from protocols.ccm import AesCcm
from protocols.errors import AuthenticationError


def _cases():
    # One case a line: the whole file would not fit a 128K heap as one JSON value.
    with open(_here() + "vectors/ccm_random.jsonl") as f:
        for line in f:
            case = json.loads(line)
            yield (binascii.unhexlify(case["key"]), case["tag"], binascii.unhexlify(case["nonce"]),
                   binascii.unhexlify(case["plaintext"]), binascii.unhexlify(case["aad"]),
                   binascii.unhexlify(case["sealed"]))


def test_seal_gives_the_aesccm_vectors():
    n = 0
    for key, tag, nonce, plaintext, aad, sealed in _cases():
        assert AesCcm(key, tag).encrypt(nonce, plaintext, aad) == sealed, n
        n += 1
    assert n == 120


def test_open_recovers_the_plaintext_of_the_vectors():
    for key, tag, nonce, plaintext, aad, sealed in _cases():
        assert AesCcm(key, tag).decrypt(nonce, sealed, aad) == plaintext


def test_a_changed_byte_is_refused_and_the_buffer_cleared():
    for key, tag, nonce, plaintext, aad, sealed in _cases():
        if not plaintext:
            continue
        bad = bytearray(sealed)
        bad[len(bad) // 2] ^= 0x40
        out = bytearray(b"\x55" * len(plaintext))
        ccm = AesCcm(key, tag)
        raises(AuthenticationError, ccm.open_into, nonce, bad, out, aad)
        assert out == bytearray(len(plaintext))


def test_one_instance_serves_many_messages():
    """The work buffers are reused: sealing A, then B, then A again gives A's bytes again."""
    ccm = AesCcm(bytes(range(16)), 4)
    nonce = bytes(13)
    first = ccm.encrypt(nonce, b"first message, longer than a block")
    ccm.encrypt(nonce, b"second", b"aad")
    assert ccm.encrypt(nonce, b"first message, longer than a block") == first
