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
BOOL: int = _regmap.BOOL
"""Register type code of a 0/1 register, published as a SenML boolean."""
ROLES: tuple[str, ...] = tuple(_roles.ROLES)
"""Names of the node roles that have a register map."""
TABLE_NAMES: dict[int, str] = {HOLDING: "holding", INPUT: "input"}
"""Human names of the two register tables, for log and error messages."""

_maps: dict[str, RegisterMap] = {}


def load_role(name: str) -> RegisterMap:
    """The register map of the role called ``name`` (cached); ValueError for an unknown role."""
    regmap = _maps.get(name)
    if regmap is None:
        regmap = cast(RegisterMap, _roles.load(name))
        _maps[name] = regmap
    return regmap

