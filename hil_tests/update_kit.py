"""What the update scenarios share on the virtual street: nodes powered up again after a reset, and images."""

from __future__ import annotations

from tools.sim.image_variant import variant_image
from tools.sim.power_up import PowerUp

__all__ = ["PowerUp", "variant_image"]
