"""Timing of a Modbus serial line by the spec: character length, the inter-frame silence t3.5, turnaround.

Modbus over Serial Line V1.02: a frame is followed by 3.5 characters of
silence, fixed at 1.75 ms above 19200 bit/s (section 2.5.1.1); after a
broadcast the master waits a turnaround delay (100-200 ms) before the next
request, so that every node has executed it.
"""

from __future__ import annotations

TURNAROUND = 0.1
"""Seconds of silence after a broadcast before the next request (Modbus serial line spec: 100-200 ms)."""
FAST_SILENCE = 0.00175
"""The inter-frame silence t3.5 above 19200 bit/s, fixed by the Modbus serial line spec (section 2.5.1.1)."""


def char_bits(parity: str, stopbits: int) -> int:
    """Bits of one character on the line: start, 8 data, parity if any, stop bits."""
    return 1 + 8 + (0 if parity == "N" else 1) + stopbits


def silence(baud: int, bits: int = 11) -> float:
    """The inter-frame silence t3.5 in seconds: 3.5 characters, or 1.75 ms above 19200 bit/s."""
    return FAST_SILENCE if baud > 19200 else 3.5 * bits / baud


FINE_WAIT = 0.001
"""The last part of a silence waited out with a blocking sleep (sub-millisecond exact; the loop is held that long)."""
