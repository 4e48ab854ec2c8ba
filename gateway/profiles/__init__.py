"""Device profiles: a third-party Modbus device described in a TOML file instead of a Python module.

A profile names the device (with its datasheet) and lists its values: holding
or input registers, coils or discrete inputs, each with a type, word order,
scale, SenML unit and, for writable ones, the range a command may write. The
loader checks it whole and turns it into the same validated register map a
node role has (``protocols.regmap.RegisterMap``), so polling, publishing and
commanding treat a profile device exactly like a built-in role.

Why here and not in ``protocols/``: the loader reads TOML with CPython's
``tomllib`` and validates with ``msgspec``, neither of which a node has; what
nodes and gateway share (the register map, the Modbus PDUs) stays in
``protocols/``. The profiles shipped with the gateway live in
``gateway/profiles/devices/`` (package data); a configuration may name its own
file (``[[node]] profile = "path/to/device.toml"``).

Every mistake is a :class:`ProfileError` naming the file, the register and the
field, e.g. ``relay.toml: register 'relay_1' (register[0]), field 'function':
expected one of 'coil', 'discrete_input', 'holding', 'input', got 'coils';
did you mean 'coil'?``
"""

from gateway.profiles.loader import (
    SHIPPED,
    Profile,
    ProfileError,
    load_profile,
    parse_profile,
    shipped_profile,
    shipped_profiles,
)

__all__ = [
    "SHIPPED",
    "Profile",
    "ProfileError",
    "load_profile",
    "parse_profile",
    "shipped_profile",
    "shipped_profiles",
]
