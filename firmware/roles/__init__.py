"""Node roles: what a node does with its hardware and registers.

A role module provides ``MAP`` (its :class:`~protocols.regmap.RegisterMap`) and
``Role(board, bank, store, safe_mode)`` with ``start()``, ``on_write(names)``
and ``sample(now_ms)``. Roles are imported only when chosen, so an image
without a role's module still boots the others.
"""

NAMES = ("lamp",)


def load(name):
    """The role module called ``name`` (one of :data:`NAMES`)."""
    if name == "lamp":
        from firmware.roles import lamp

        return lamp
    raise ValueError("unknown role %r" % (name,))
