"""Node roles: each module declares one role's register map (see protocols.regmap).

``load(name)`` imports a role by name so that a node or the gateway can pick
its map from configuration without importing every role.
"""

if False:  # type checkers only
    from protocols.regmap import RegisterMap

ROLES = ("lamp", "sdm630", "meter", "env")


def load(name: str) -> "RegisterMap":
    """Return the RegisterMap of the role called ``name``."""
    if name not in ROLES:
        raise ValueError("unknown role %r; known roles: %s" % (name, ", ".join(ROLES)))
    module = __import__("protocols.roles." + name, None, None, ["MAP"])
    rmap: RegisterMap = module.MAP
    return rmap
