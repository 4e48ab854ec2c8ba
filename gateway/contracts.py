"""The typed face of the shared wire contracts (``protocols/``) as the gateway uses them.

``protocols/`` runs on MicroPython too, so it carries no annotations and its
modules are not something ``mypy --strict`` can check. This module is the one
place where the gateway meets them: it imports them at run time without letting
mypy follow the import, and states the types of exactly the parts the gateway
calls. It restates no table: register maps come from ``protocols.roles``. (Modules
that ship a ``.pyi`` stub beside them, like ``protocols.senml``, are imported
directly.)
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any, Protocol, cast

from gateway.profiles import Profile, ProfileError, shipped_profile, shipped_profiles

Number = int | float
"""A register's engineering value (BOOL registers give ``bool``, a subclass of int)."""


class Register(Protocol):
    """One register of a role's map (``protocols.regmap.Register``)."""

    name: str
    table: int
    address: int
    type: int
    scale: int
    unit: str | None
    access: int
    minimum: Number
    maximum: Number
    width: int
    order: int

    def to_raw(self, value: Number) -> Number:
        """Engineering value -> raw value; ValueError when out of bounds or too precise."""

    def value(self, raw: Number) -> Number:
        """Raw value -> engineering value (``bool`` for BOOL registers)."""

    def words(self, raw: Number) -> tuple[int, ...]:
        """Raw value -> the register words that carry it."""

    def from_words(self, words: Sequence[int], offset: int = 0) -> Number:
        """Register words -> raw value."""


class RegisterMap(Protocol):
    """A role's validated register table (``protocols.regmap.RegisterMap``)."""

    role: str
    role_id: int
    registers: list[Register]

    def __getitem__(self, name: str) -> Register:
        """The register called ``name``; KeyError naming close names otherwise."""

    def __contains__(self, name: object) -> bool:
        """Whether the role has a register called ``name``."""

    def blocks(self, table: int) -> tuple[tuple[int, int], ...]:
        """``(start, count)`` read requests covering every register of ``table``."""

    def decode(self, table: int, start: int, words: Sequence[int]) -> list[tuple[Register, Number]]:
        """Words read from ``start`` -> ``(register, raw)`` for every whole register inside."""


_regmap: Any = importlib.import_module("protocols.regmap")
_roles: Any = importlib.import_module("protocols.roles")

HOLDING: int = _regmap.HOLDING
"""Holding-register table (read with function 03, written with 16)."""
INPUT: int = _regmap.INPUT
"""Input-register table (read with function 04)."""
COIL: int = _regmap.COIL
"""Coil table (read with function 01, written with 05 or 15); one bit per address."""
DISCRETE: int = _regmap.DISCRETE
"""Discrete-input table (read with function 02); one bit per address."""
TABLES: tuple[int, ...] = tuple(_regmap.TABLES)
"""Every table, in the order a node's values are read and reported (holding, input, coil, discrete)."""
BIT_TABLES: tuple[int, ...] = tuple(_regmap.BIT_TABLES)
"""The tables of single bits (coils, discrete inputs): their "words" are 0 or 1."""
BOOL: int = _regmap.BOOL
"""Register type code of a 0/1 register, published as a SenML boolean."""
ROLES: list[str] = [*_roles.ROLES, *shipped_profiles()]
"""Names of the node roles that have a register map: the firmware's roles, then the shipped device
profiles; a profile file named in the configuration joins them (:func:`add_profile`)."""
FIRMWARE_ROLES: tuple[str, ...] = tuple(_roles.ROLES)
"""The roles of streetedge's own nodes (lamp, meter, env): commanded by their own actions, never by ``write``."""
TABLE_NAMES: dict[int, str] = {HOLDING: "holding", INPUT: "input", COIL: "coil", DISCRETE: "discrete input"}
"""Human names of the tables, for log and error messages."""

_maps: dict[str, RegisterMap] = {}
_profile_sources: dict[str, str] = {}


def load_role(name: str) -> RegisterMap:
    """The register map of the role called ``name`` (cached); ValueError for an unknown role."""
    regmap = _maps.get(name)
    if regmap is None:
        if name in _roles.ROLES:
            regmap = cast(RegisterMap, _roles.load(name))
        elif name in ROLES:
            try:
                regmap = shipped_profile(name).regmap
            except ProfileError as exc:
                raise ValueError(str(exc)) from exc
        else:
            raise ValueError(f"unknown role {name!r}; known roles: {', '.join(ROLES)}")
        _maps[name] = regmap
    return regmap


def add_profile(profile: Profile) -> None:
    """Make a profile read from a file a role: ``load_role(profile.name)`` then gives its map.

    ValueError when the name belongs to a firmware role, a shipped profile or another file.
    """
    name = profile.name
    source = _profile_sources.get(name)
    if source == profile.source:
        _maps[name] = profile.regmap  # the same file read again (a reload): its current content wins
        return
    if source is not None:
        raise ValueError(f"profile name {name!r} is already used by {source}")
    if name in ROLES:
        kind = "a node role" if name in _roles.ROLES else "a shipped profile"
        raise ValueError(f"profile name {name!r} is already {kind}; name the device in the file otherwise")
    _profile_sources[name] = profile.source
    _maps[name] = profile.regmap
    ROLES.append(name)

