"""Turning the dashboard on in a gateway configuration: for the demo, the browser tests and the bench.

``enable_dashboard`` makes the page's operator key (``state_dir/<key_id>.key``), trusts it in a ``[[key]]``
entry scoped to the page's actions on the whole street, and appends a ``[dashboard]`` table with one user::

    login = enable_dashboard(Path("gateway.toml"), Path(".run/demo"), port=9481)
    print(login.url, login.user, login.password)
"""

from __future__ import annotations

import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from gateway.dashboard.auth import hash_password
from gateway.dashboard.commands import PAGE_ACTIONS
from tools.keys import key_entry, new_key

KEY_ID = "cabinet-page"
DEFAULT_PORT = 9481


@dataclass(frozen=True)
class DashboardLogin:
    """Where the page is and how to log in."""

    url: str
    user: str
    password: str


def free_port(preferred: int = DEFAULT_PORT, host: str = "127.0.0.1") -> int:
    """``preferred`` when nothing listens there, else a port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise OSError("no free port")


def user_entry(name: str, password: str) -> str:
    """The ``[[dashboard.user]]`` TOML entry for ``name`` (the password hashed)."""
    return f'[[dashboard.user]]\nname = "{name}"\npassword = "{hash_password(password)}"\n'


def enable_dashboard(
    config_path: Path, state_dir: Path, *, port: int = DEFAULT_PORT, user: str = "operator",
    password: str | None = None, history_interval: float = 30.0,
) -> DashboardLogin:
    """Append the page's key and ``[dashboard]`` to a configuration (that has ``[commands]`` already)."""
    password = password or secrets.token_urlsafe(9)
    key_path, public = new_key(KEY_ID, state_dir, overwrite=True)
    text = (
        "\n" + key_entry(KEY_ID, public, list(PAGE_ACTIONS), ["all"])
        + f'\n[dashboard]\nenabled = true\nport = {port}\nkey_id = "{KEY_ID}"\nkey_file = "{key_path}"\n'
        f'history = "{state_dir / "dashboard.sqlite"}"\nhistory_interval = {history_interval}\n\n'
        + user_entry(user, password)
    )
    config_path.write_text(config_path.read_text() + text)
    return DashboardLogin(f"http://127.0.0.1:{port}/", user, password)
