"""The parameters of ``update`` and ``cancel_update``, checked for shape (:mod:`gateway.commands.update_action`).

All are required: a command never leaves one to a default::

    update:         {"package": "<64 hex digits>", "canary": ["lamp-1", "group:c"], "stop_on_failure": true}
    cancel_update:  {"rollout": "<the id of the update command>"}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.update.store import DIGEST

__all__ = ["check_cancel_params", "check_params"]

_PARAMS = ("package", "canary", "stop_on_failure")
_MAX_CANARY = 32
_ID_MAX = 64  # as a command id (gateway.commands.parse)

_HINTS = {
    "package": "the SHA-256 of the image, as `streetedge update pack` prints it",
    "canary": "the nodes updated first, or [] for none",
    "stop_on_failure": "true stops the roll-out at the first failed node",
}


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``update`` parameters checked for shape (whether package and canaries exist is planning's)."""
    extra = sorted(set(params) - set(_PARAMS))
    if extra:
        raise ValueError(f"update takes 'package', 'canary', 'stop_on_failure'; unexpected {extra[0][:40]!r}")
    for name in _PARAMS:
        if name not in params:
            raise ValueError(f"update needs {name!r} (nothing is assumed: {_HINTS[name]})")
    package, canary, stop = params["package"], params["canary"], params["stop_on_failure"]
    if not isinstance(package, str) or not DIGEST.fullmatch(package):
        raise ValueError("'package' must be the image's SHA-256, 64 lower-case hex digits")
    if not isinstance(canary, list) or len(canary) > _MAX_CANARY or not all(isinstance(c, str) for c in canary):
        raise ValueError(f"'canary' must be a list of up to {_MAX_CANARY} node ids or group:<name> ([] for none)")
    if not isinstance(stop, bool):
        raise ValueError("'stop_on_failure' must be true or false")
    return {"package": package, "canary": list(canary), "stop_on_failure": stop}



def check_cancel_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The ``cancel_update`` parameters: ``{"rollout": "<the update command's id>"}``, required."""
    extra = sorted(set(params) - {"rollout"})
    if extra:
        raise ValueError(f"cancel_update takes 'rollout' only; unexpected {extra[0][:40]!r}")
    if "rollout" not in params:
        raise ValueError("cancel_update needs 'rollout' (nothing is assumed: the id of the update command to stop)")
    rollout = params["rollout"]
    if not isinstance(rollout, str) or not 1 <= len(rollout) <= _ID_MAX:
        raise ValueError(f"'rollout' must be the update command's id, 1..{_ID_MAX} characters")
    return {"rollout": rollout}
