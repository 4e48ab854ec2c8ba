"""The dashboard section of the gateway configuration: ``[dashboard]`` and its ``[[dashboard.user]]`` entries.

Example::

    [dashboard]
    enabled = true
    listen = "127.0.0.1"            # loopback by default; a cabinet's LAN address to serve engineers there
    port = 9481
    tls_cert = ""                   # PEM certificate and key: serve https
    tls_key = ""
    key_id = "cabinet-ops"          # the [[key]] whose scope the page's commands get
    key_file = "/var/lib/streetedge/cabinet-ops.key"   # its Ed25519 private key (streetedge keys new)
    history = "/var/lib/streetedge/dashboard.sqlite"   # the plots' bounded history ("" keeps none)
    history_hours = 6
    history_interval = 30

    [[dashboard.user]]
    name = "ana"
    password = "$argon2id$v=19$m=65536,t=3,p=4$..."     # streetedge dashboard-user ana

Commands from the page are signed with ``key_file`` under ``key_id`` and go through the gateway's
command router like upstream commands: the ``[[key]]`` entry of ``key_id`` bounds what the page may do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec

from gateway.service.config_check import NAME_PATTERN

if TYPE_CHECKING:
    from gateway.service.config import Config

UserName = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, max_length=64)]


class DashboardUser(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[dashboard.user]]``: one person who may log in to the dashboard."""

    name: UserName
    """Login name; shown beside every command the person gives."""
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=512)]
    """Argon2id hash of the password (``streetedge dashboard-user NAME`` prints it); never the password."""


class DashboardConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[dashboard]``: the cabinet dashboard, a web page served by the gateway (``gateway.dashboard``)."""

    enabled: bool = False
    """Serve the dashboard."""
    listen: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    """Address to bind; loopback by default."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9481
    """TCP port (0 picks a free one, for tests)."""
    tls_cert: str = ""
    """PEM certificate chain: with ``tls_key``, the page is served over https."""
    tls_key: str = ""
    """PEM private key of ``tls_cert``."""
    key_id: str = ""
    """The ``[[key]]`` the page's commands are signed as ("" : the page only shows, it cannot act)."""
    key_file: str = ""
    """Ed25519 private key (PKCS#8 PEM) of ``key_id``; required with it."""
    history: str = ""
    """SQLite file of the plotted history ("" keeps it in memory, lost at restart)."""
    history_hours: Annotated[float, msgspec.Meta(gt=0, le=168)] = 6.0
    """Hours of history kept; older samples are deleted."""
    history_interval: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 30.0
    """Seconds between two samples of each plotted value."""
    session_hours: Annotated[float, msgspec.Meta(gt=0, le=720)] = 12.0
    """Hours a login lasts without use."""
    user: list[DashboardUser] = msgspec.field(default_factory=list)
    """Who may log in."""


def check_dashboard(config: Config) -> tuple[str, str] | None:
    """Rules across tables for ``[dashboard]``: ``(key path, problem)`` of the first, or None."""
    dash = config.dashboard
    seen: dict[str, int] = {}
    for i, user in enumerate(dash.user):
        j = seen.setdefault(user.name, i)
        if j != i:
            return f"dashboard.user[{i}].name", f"{user.name!r} is already used by dashboard.user[{j}]"
        if not user.password.startswith("$argon2"):
            return (f"dashboard.user[{i}].password",
                    "not an argon2 hash (use the line `streetedge dashboard-user` prints)")
    if bool(dash.tls_cert) != bool(dash.tls_key):
        return "dashboard", "tls_cert and tls_key go together"
    if bool(dash.key_id) != bool(dash.key_file):
        return "dashboard", "key_id and key_file go together"
    if dash.key_id and dash.key_id not in {k.id for k in config.key}:
        return ("dashboard.key_id",
                f"no [[key]] with id {dash.key_id!r}: its entry gives the page's commands their scope")
    if dash.enabled and not dash.user:
        return "dashboard", "an enabled dashboard needs at least one [[dashboard.user]]"
    return None
