"""Commands from the page: signed with the gateway's local operator key, run by the command router.

A command given on the page becomes the same COSE_Sign1 envelope an upstream operator sends, signed
with ``[dashboard] key_file`` under ``key_id``; the router checks it like any other (the ``[[key]]``
entry of ``key_id`` is its scope), writes it to the audit chain, executes it, confirms it by reading
the nodes back and publishes its result upstream. Before that, an audit entry ``dashboard`` records
which logged-in user asked for which command id, so the chain says who did what.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands import cose
from gateway.commands.audit import AuditLog
from gateway.dashboard.history import History

LIFETIME = 60
"""Seconds a page's command stays valid after it is signed."""
PAGE_ACTIONS = ("dim", "switch", "override", "reboot", "cancel_update")
"""Actions the page offers (the router accepts the full list from upstream)."""


class Router(Protocol):
    """What the page needs of :class:`~gateway.commands.router.CommandRouter`."""

    audit: AuditLog

    async def handle(self, payload: bytes, received: float | None = None) -> dict[str, Any] | None:
        """Handle one envelope end to end; its result."""


def load_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in a PKCS#8 PEM file; ValueError if it is another kind of key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


class PageOperator:
    """Signs and runs the page's commands, and remembers who gave them.

    Args:
        router: the gateway's command router.
        key: the local operator key.
        kid: its ``[[key]]`` id.
        history: where the page's commands are remembered.
        clock: wall clock.
    """

    def __init__(
        self, router: Router, key: Ed25519PrivateKey, kid: str, history: History,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.router = router
        self.key = key
        self.kid = kid
        self.history = history
        self.clock = clock

    def envelope(self, command_id: str, target: str, action: str, params: dict[str, Any]) -> bytes:
        """The signed envelope of one command."""
        issued = int(self.clock())
        command: dict[str, Any] = {"id": command_id, "iat": issued, "exp": issued + LIFETIME,
                                   "target": target, "action": action}
        if params:
            command["params"] = params
        return cose.sign1(cbor2.dumps(command, canonical=True), self.key, self.kid.encode())

    async def run(self, user: str, target: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        """Give one command as ``user``; its result (``status`` done, rejected or failed, and ``detail``)."""
        command_id = f"page-{secrets.token_hex(6)}"
        received = time.perf_counter()
        await self.router.audit.record("dashboard", id=command_id, user=user, target=target, action=action,
                                       params=params)
        result = await self.router.handle(self.envelope(command_id, target, action, params), received)
        if result is None:  # cannot happen for a fresh id; said rather than assumed
            result = {"id": command_id, "status": "failed", "detail": "the command is already running"}
        entry = {"ts": self.clock(), "user": user, "id": command_id, "target": target, "action": action,
                 "params": json.dumps(params, sort_keys=True), "status": str(result.get("status")),
                 "detail": str(result.get("detail", ""))}
        await asyncio.to_thread(self.history.add_action, entry)
        return result
