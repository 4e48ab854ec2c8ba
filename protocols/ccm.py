"""AES-CCM (RFC 3610, NIST SP 800-38C) on a bare AES block cipher, for both interpreters.

MicroPython's ``cryptolib`` has AES-ECB but no CCM, so CCM is built here on
the block cipher: a CBC-MAC over the header, associated data and message,
and CTR-mode encryption of the message and the tag. On CPython the block
cipher is the ``cryptography`` package's AES-ECB (tests compare this module
with its AESCCM).

Keys of 16 or 32 bytes (MicroPython has no AES-192), nonces of 7 to 13
bytes, tags of 4 to 16 bytes (even), associated data shorter than 65,280
bytes. The work buffers are allocated once per key:
:meth:`AesCcm.seal_into` and :meth:`AesCcm.open_into` write into a buffer of
the caller's and allocate nothing of their own on MicroPython beyond the
per-block slices the ECB call needs. One instance can serve several formats
under the same key (a node's BTHome adverts and its GATT frames share one:
their nonces never meet), which keeps one key schedule and one buffer set in
a node's RAM.
"""

from protocols.errors import AuthenticationError, ProtocolError

try:
    from micropython import const
except ImportError:  # CPython

    def const(x):
        return x


try:
    import cryptolib

    def _block_cipher(key):
        return cryptolib.aes(key, 1).encrypt  # mode 1: ECB; encrypt(src, dst), one bound method

except ImportError:  # CPython
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    def _block_cipher(key):
        encryptor = Cipher(algorithms.AES(bytes(key)), modes.ECB()).encryptor()

        def encrypt(src, dst):
            dst[:] = encryptor.update(bytes(src))

        return encrypt


_BLOCK = 16
# The errors' texts, numbered (_text): one string constant, where each text on its own would be an object in a
# node's RAM even with the module in ROM.
_TEXTS = const(
    "AES key of %d bytes: 16 or 32 expected\n"  # 0
    "CCM tag of %d bytes: an even length from 4 to 16 expected\n"  # 1
    "sealed data of %d bytes is shorter than the tag\n"  # 2
    "output buffer of %d bytes, %d needed\n"  # 3
    "CCM tag mismatch\n"  # 4
    "CCM nonce of %d bytes: 7 to 13 expected\n"  # 5
    "message of %d bytes too long for a %d-byte nonce\n"  # 6
    "associated data of %d bytes: under 65280 supported\n"  # 7
    "a shared AES-CCM with a %d-byte tag: %d expected"  # 8
)


def _text(number, args=()):
    """Text ``number`` of _TEXTS formatted with ``args``."""
    return _TEXTS.split("\n")[number] % args


class AesCcm:
    """AES-CCM with one key and a fixed tag length (BTHome uses 4)."""

    def __init__(self, key, tag_length=4):
        if len(key) not in (16, 32):  # MicroPython's cryptolib has no AES-192
            raise ProtocolError(_text(0, len(key)))
        if tag_length < 4 or tag_length > 16 or tag_length % 2:
            raise ProtocolError(_text(1, tag_length))
        self.tag_length = tag_length
        self._encrypt = _block_cipher(bytes(key))
        self._mac = bytearray(_BLOCK)  # the running CBC-MAC
        self._work = bytearray(_BLOCK)  # the block being fed / the counter block
        self._stream = bytearray(_BLOCK)  # E(counter block); the first associated-data block while it is fed

    def encrypt(self, nonce, plaintext, aad=b""):
        """Ciphertext followed by the tag, as new bytes."""
        out = bytearray(len(plaintext) + self.tag_length)
        self.seal_into(nonce, plaintext, out, aad)
        return bytes(out)

    def decrypt(self, nonce, sealed, aad=b""):
        """The plaintext of ``sealed`` (ciphertext + tag); AuthenticationError when the tag does not match."""
        if len(sealed) < self.tag_length:
            raise AuthenticationError(_text(2, len(sealed)))
        out = bytearray(len(sealed) - self.tag_length)
        self.open_into(nonce, sealed, out, aad)
        return bytes(out)

    def seal_into(self, nonce, plaintext, out, aad=b""):
        """Write ciphertext + tag into ``out`` (at least ``len(plaintext) + tag_length`` bytes); return that length."""
        n = len(plaintext)
        if len(out) < n + self.tag_length:
            raise ProtocolError(_text(3, (len(out), n + self.tag_length)))
        self._cbc_mac(nonce, plaintext, aad)
        self._ctr(nonce, plaintext, out)
        t = self.tag_length
        for i in range(t):
            out[n + i] = self._mac[i] ^ self._stream[i]
        return n + t

    def open_into(self, nonce, sealed, out, aad=b""):
        """Write the plaintext of ``sealed`` into ``out``; return its length. AuthenticationError on a bad tag.

        ``out`` is overwritten with zeros before the error is raised, so no
        unauthenticated plaintext is left behind.
        """
        t = self.tag_length
        n = len(sealed) - t
        if n < 0:
            raise AuthenticationError(_text(2, len(sealed)))
        if len(out) < n:
            raise ProtocolError(_text(3, (len(out), n)))
        self._ctr(nonce, memoryview(sealed)[:n], out)
        self._cbc_mac(nonce, memoryview(out)[:n], aad)
        self._counter(nonce, 0)
        self._encrypt(self._work, self._stream)
        diff = 0
        for i in range(t):
            diff |= (self._mac[i] ^ self._stream[i]) ^ sealed[n + i]
        if diff:
            for i in range(n):
                out[i] = 0
            raise AuthenticationError(_text(4))
        return n

    def _counter(self, nonce, index):
        """Counter block A_index in self._work: flags (L - 1), nonce, index on L bytes."""
        if len(nonce) < 7 or len(nonce) > 13:
            raise ProtocolError(_text(5, len(nonce)))
        work = self._work
        q = 15 - len(nonce)
        work[0] = q - 1
        work[1 : 1 + len(nonce)] = nonce
        for i in range(q):
            work[15 - i] = (index >> (8 * i)) & 0xFF

    def _ctr(self, nonce, src, dst):
        """dst = src XOR the key stream from counter 1 on; then E(A_0), the tag's mask, in self._stream."""
        n = len(src)
        if n >> (8 * (15 - len(nonce))):
            raise ProtocolError(_text(6, (n, len(nonce))))
        block = 0
        pos = 0
        while pos < n:
            block += 1
            self._counter(nonce, block)
            self._encrypt(self._work, self._stream)
            end = min(pos + _BLOCK, n)
            for i in range(pos, end):
                dst[i] = src[i] ^ self._stream[i - pos]
            pos = end
        self._counter(nonce, 0)
        self._encrypt(self._work, self._stream)

    def _cbc_mac(self, nonce, message, aad):
        """The CBC-MAC T of RFC 3610 section 2.2 in self._mac."""
        self._counter(nonce, len(message))  # B_0 has the counter block's layout, its flags apart
        a = len(aad)
        if a >= 0xFF00:
            raise ProtocolError(_text(7, a))
        b0 = self._work
        b0[0] = (0x40 if a else 0) | (((self.tag_length - 2) // 2) << 3) | (14 - len(nonce))
        mac = self._mac
        self._encrypt(b0, mac)
        if a:
            # The first associated-data block starts with its 2-byte length.
            head = self._stream
            for i in range(_BLOCK):
                head[i] = 0
            head[0] = a >> 8
            head[1] = a & 0xFF
            first = min(a, _BLOCK - 2)
            for i in range(first):
                head[2 + i] = aad[i]
            self._feed(head, 0, _BLOCK)
            self._feed(aad, first, a)
        self._feed(message, 0, len(message))

    def _feed(self, data, pos, end):
        """Fold data[pos:end] into the CBC-MAC, block by block (the last zero-padded)."""
        mac = self._mac
        work = self._work
        while pos < end:
            stop = min(pos + _BLOCK, end)
            for i in range(pos, stop):
                mac[i - pos] ^= data[i]
            self._encrypt(mac, work)
            mac[:] = work
            pos = stop


def shared(key, tag_length):
    """``key`` itself when it is an :class:`AesCcm` with ``tag_length`` (one instance shared by several
    formats under one key), else a new :class:`AesCcm` for the key bytes."""
    if isinstance(key, AesCcm):
        if key.tag_length != tag_length:
            raise ProtocolError(_text(8, (key.tag_length, tag_length)))
        return key
    return AesCcm(key, tag_length)
