"""Node roles: each module declares one role's register map (see protocols.regmap).

``load(name)`` imports a role by name so that a node or the gateway can pick
its map from configuration without importing every role. Third-party devices
(energy meters, relay modules) are not roles here: the gateway describes them
with device profiles (``gateway/profiles``), TOML files it alone reads.
"""

if False:  # type checkers only
    from protocols.regmap import RegisterMap

ROLES = ("lamp", "meter", "env")


def lazy_map(namespace, role):
    """A role module's ``__getattr__`` on a node: ``MAP`` is built (and kept) the first time it is asked for.

    ``namespace`` is the role module's ``globals()`` (with ``REGISTERS`` and
    ``ROLE_ID``). A node packs the rows into its register bank itself and
    never needs the map's objects (about 15 KB on the unix port); the
    gateway, on CPython, builds ``MAP`` at import.
    """

    def getattr_(name):
        if name == "MAP":
            import gc

            from protocols.regmap import RegisterMap

            gc.collect()  # the map's many small objects land in one tidy heap, not in the gaps
            rmap = namespace["MAP"] = RegisterMap(role, namespace["REGISTERS"], namespace["ROLE_ID"],
                                                 mirrors=namespace.get("MIRRORS", ()),
                                                 mirrors_since=namespace.get("MIRRORS_SINCE", 0))
            return rmap
        raise AttributeError(name)

    return getattr_


def load(name: str) -> "RegisterMap":
    """Return the RegisterMap of the role called ``name``."""
    if name not in ROLES:
        raise ValueError("unknown role %r; known roles: %s" % (name, ", ".join(ROLES)))
    module = __import__("protocols.roles." + name, None, None, ["MAP"])
    rmap: RegisterMap = module.MAP
    return rmap
