"""A small deterministic random source for the virtual parts (xorshift32): the same sequence on both interpreters."""


class Rng:
    """xorshift32; ``seed`` 0 is mapped to a fixed non-zero state."""

    def __init__(self, seed=0):
        self._x = (seed * 747796405 + 2891336453) & 0xFFFFFFFF or 0x9E3779B9

    def next32(self):
        """The next 32-bit value."""
        x = self._x
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self._x = x
        return x

    def uniform(self, lo, hi):
        """A number in [lo, hi)."""
        return lo + (hi - lo) * (self.next32() / 4294967296.0)

    def chance(self, p):
        """True with probability ``p``."""
        return self.next32() < p * 4294967296.0


def hashed(seed, n):
    """A reproducible ``Rng`` for slot ``n`` of a stream ``seed`` (no state carried between slots)."""
    return Rng((seed * 1000003 + n * 7919 + 1) & 0x7FFFFFFF)
