"""Operator key pairs: ``streetedge keys new NAME`` and the files it writes.

A key pair is an Ed25519 private key in ``NAME.key`` (PKCS#8 PEM, readable by
its owner only) and the public key in ``NAME.pub`` (32 bytes in base64url, one
line). The gateway trusts the public key through a ``[[key]]`` entry whose
``id`` is NAME; :func:`key_entry` writes that entry.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


def public_text(key: Ed25519PrivateKey) -> str:
    """The public half of ``key`` as the gateway configuration spells it (base64url, no padding)."""
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def new_key(name: str, folder: Path, *, overwrite: bool = False) -> tuple[Path, str]:
    """Make a key pair ``folder/NAME.key`` + ``NAME.pub``; returns (private key path, public text).

    Raises FileExistsError rather than overwrite an existing private key (unless ``overwrite``).
    """
    folder.mkdir(parents=True, exist_ok=True)
    private_path = folder / f"{name}.key"
    if private_path.exists() and not overwrite:
        raise FileExistsError(f"{private_path} exists; not overwriting a private key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = public_text(key)
    (folder / f"{name}.pub").write_text(public + "\n")
    return private_path, public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read a private key written by :func:`new_key`; ValueError if it is not an Ed25519 key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def key_entry(name: str, public: str, actions: list[str], targets: list[str]) -> str:
    """The ``[[key]]`` TOML entry that makes a gateway trust this key for ``actions`` on ``targets``."""
    def toml_list(items: list[str]) -> str:
        return "[" + ", ".join(f'"{item}"' for item in items) + "]"

    return (
        f'[[key]]\nid = "{name}"\npublic = "{public}"\n'
        f"actions = {toml_list(actions)}\ntargets = {toml_list(targets)}\n"
    )


def commands_toml(state_dir: Path) -> str:
    """The ``[commands]`` table that keeps the replay database and the audit log in ``state_dir``."""
    return f'[commands]\nreplay_db = "{state_dir / "commands.sqlite"}"\naudit_log = "{state_dir / "audit.jsonl"}"\n'


def trust(config_path: Path, state_dir: Path, name: str, key: Ed25519PrivateKey) -> None:
    """Append ``[commands]`` and a ``[[key]]`` trusting ``key`` for everything to a configuration file.

    For labs, the demo and tests, where one generated operator key commands the whole street.
    """
    extra = commands_toml(state_dir) + key_entry(name, public_text(key), ["*"], ["*"])
    config_path.write_text(config_path.read_text() + "\n" + extra)
