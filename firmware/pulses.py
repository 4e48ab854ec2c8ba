"""Reed-switch pulses: debounce and direction, in the few integer steps an interrupt handler can afford.

A water meter's magnet wheel turns once per pulse volume. Reed switch A
(pulled up: 1 open, 0 closed by the magnet) gives one closing per turn; on
boards with a second reed B a quarter turn further on, the level of B when A
opens tells the direction::

    forward:  A closes, B closes, A opens (B closed: 0), B opens
    backward: B closes, A closes, B opens, A opens (B open: 1)

The board calls :meth:`PulseCounter.edge` on every change of A (from a pin
interrupt on the ESP32, from the water physics on the virtual board) with the
time in ``time.ticks_ms`` and both levels. One turn counts when A has been open
for at least ``debounce_ms`` and then closed for at least ``debounce_ms``;
the count is taken when A opens again. So contact bounce (a burst of short
edges when the contact makes or breaks) and short spikes of either polarity
never count, and a turn is counted once. The price: a turn counts when the
magnet leaves the reed, not when it arrives (a meter that stops with the
magnet on the reed shows that turn when the water moves again).

The handler never allocates: small-int arithmetic and attribute stores only.
It is the only writer; readers take ``forward``, ``reverse`` and ``last_ms``.
"""

import time


class PulseCounter:
    """Counts debounced turns of a reed-switch meter; ``quadrature``: channel B gives the direction."""

    def __init__(self, debounce_ms=20, quadrature=False):
        self.debounce_ms = debounce_ms
        self.quadrature = quadrature
        self.forward = 0  # turns counted forward since start()
        self.reverse = 0  # turns counted backward since start()
        self.last_ms = 0  # ticks_ms of the last counted turn
        self.rejected = 0  # edges that ended a contact state shorter than debounce_ms
        self._level = 1
        self._since = 0
        self._armed = True

    def start(self, now_ms, a):
        """The input's level ``a`` when counting begins.

        Armed from the start, and the level taken as settled: the count is
        taken when A opens, so a turn in progress at boot (magnet on the reed)
        has not been counted before and counts once when the magnet leaves,
        however soon that is.
        """
        self._level = a
        self._since = time.ticks_add(now_ms, -self.debounce_ms)
        self._armed = True

    def edge(self, now_ms, a, b):
        """Channel A changed: its level is now ``a`` and channel B's is ``b``, at ``now_ms``."""
        level = self._level
        if a == level:
            return  # the opposite edge was lost (coalesced bounce): nothing changed
        held = time.ticks_diff(now_ms, self._since)
        self._level = a
        self._since = now_ms
        if held < self.debounce_ms:
            self.rejected += 1
            return
        if level:
            self._armed = True  # a stable open: the next stable close is a turn
        elif self._armed:
            self._armed = False  # a stable close ended: one turn
            if self.quadrature and b:
                self.reverse += 1
            else:
                self.forward += 1
            self.last_ms = now_ms
