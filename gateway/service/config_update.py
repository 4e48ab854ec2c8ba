"""The ``[update]`` section: where the gateway finds the update packages an ``update`` command names.

Example::

    [update]
    packages = "/var/lib/streetedge/packages"   # package files (``streetedge update pack``)
    confirm_within = 120                        # seconds a node has to come back on its new image

An ``update`` command names its package by the SHA-256 of the image
(``gateway.commands.update_action``); the operator copies the package file into
``packages`` first (any file name). Without ``packages`` every update command
is refused.
"""

from __future__ import annotations

from typing import Annotated

import msgspec


class UpdateConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[update]``: the package directory and how long a node may take to confirm its new image."""

    packages: str = ""
    """Directory of update package files; empty: the gateway takes no ``update`` command."""
    confirm_within: Annotated[float, msgspec.Meta(ge=5, le=3600)] = 120.0
    """Seconds a node has, after it switched, to run its new image and confirm it."""
