"""Nodes that boot again by themselves: a virtual street's node processes restarted whenever they end."""

from __future__ import annotations

import threading
from typing import Any

from tools.sim.street import VirtualStreet


class PowerUp:
    """Starts every node of ``street`` again whenever its process ends, as a chip boots again after a reset.

    ``hardware``: the nodes' hardware settings at each start (e.g. a widened frame gap); None: their defaults.
    """

    def __init__(self, street: VirtualStreet, hardware: dict[str, Any] | None = None) -> None:
        self.street = street
        self.hardware = hardware
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for unit, node in self.street.nodes.items():
                if not node.alive():
                    self.street.start_node(unit, wait=False, hardware=self.hardware)

    def __enter__(self) -> PowerUp:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
