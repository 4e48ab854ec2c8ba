"""Profiles named by a configuration become roles: the hook between ``[[node]] profile`` and the register maps.

Kept apart from the loader because it registers with :mod:`gateway.contracts`,
which itself loads the shipped profiles by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, TypeVar

import msgspec

from gateway.contracts import add_profile
from gateway.profiles.loader import ProfileError, load_profile


class NodeProfileError(ProfileError):
    """A node's profile cannot be used: ``path`` is the configuration key, ``message`` the problem."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class _Node(Protocol):
    @property
    def role(self) -> str: ...
    @property
    def profile(self) -> str: ...


NodeT = TypeVar("NodeT", bound=_Node)


def profile_role(path: Path, role: str) -> str:
    """Read the profile at ``path``, make it a role and return its name; ProfileError says what is wrong.

    ``role`` is what the node's configuration says besides: the default (``"lamp"``, left out) or the
    profile's own name; any other role contradicts the file.
    """
    profile = load_profile(path)
    try:
        add_profile(profile)
    except ValueError as exc:
        raise ProfileError(f"{path}: {exc}") from None
    if role not in ("lamp", profile.name):
        raise ProfileError(f"role {role!r} contradicts {path}, which describes {profile.name!r}: give one of them")
    return profile.name


def with_profiles(nodes: Sequence[NodeT], base: Path) -> list[NodeT]:
    """The ``[[node]]`` tables with each profile node's role set to its profile's name.

    Relative profile paths start at ``base`` (the configuration file's folder). Raises
    NodeProfileError naming ``node[i].profile``.
    """
    out = list(nodes)
    for i, node in enumerate(out):
        if node.profile:
            try:
                out[i] = msgspec.structs.replace(node, role=profile_role(base / node.profile, node.role))  # type: ignore[type-var]
            except ProfileError as exc:
                raise NodeProfileError(f"node[{i}].profile", str(exc)) from None
    return out
