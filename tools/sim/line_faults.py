"""Faults on the virtual RS-485 line: flipped bits and lost bytes, the same for every receiver."""

from __future__ import annotations

import random


class LineFaults:
    """Each byte, with probability ``drop``, is lost; else, with probability ``noise``, has one bit flipped.

    Faults happen on the line, so every receiver sees the same corrupted byte. ``seed`` makes runs repeatable.
    """

    def __init__(self, noise: float = 0.0, drop: float = 0.0, seed: int = 0) -> None:
        self.noise = noise
        self.drop = drop
        self._rng = random.Random(seed)
        self.corrupted = 0
        """Bytes with a flipped bit (noise)."""
        self.lost = 0
        """Bytes lost on the line (drop)."""

    def apply(self, data: bytes) -> bytes:
        """``data`` as the line carries it."""
        if not self.noise and not self.drop:
            return data
        rng = self._rng
        out = bytearray()
        for byte in data:
            if self.drop and rng.random() < self.drop:
                self.lost += 1
                continue
            if self.noise and rng.random() < self.noise:
                out.append(byte ^ (1 << rng.randrange(8)))
                self.corrupted += 1
            else:
                out.append(byte)
        return bytes(out)
