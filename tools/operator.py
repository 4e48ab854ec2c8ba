"""The operator's side of a command: build it, sign it, publish it, wait for its result.

Used by ``streetedge cmd``, the demo, the end-to-end tests and the command
bench. A command is a CBOR map (docs/upstream.md) inside a COSE_Sign1 envelope
signed with the operator's Ed25519 key; the result comes back on the
gateway's ``result`` topic with the same id::

    signer = Signer(load_private_key(Path("maint-elm.key")), "maint-elm")
    result = await send_command(broker="mqtt://10.0.0.5:1883", site="district-7",
                                gateway="cabinet-12", signer=signer,
                                target="group:elm-street", action="dim", params={"level": 40})
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import cbor2
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.commands import cose
from gateway.mqtt.topics import Topics
from protocols import cbor

LIFETIME = 60.0
"""Seconds a command stays valid after it is issued, by default."""


def build_command(
    target: str,
    action: str,
    params: dict[str, Any] | None = None,
    command_id: str | None = None,
    *,
    now: float | None = None,
    lifetime: float = LIFETIME,
) -> dict[str, Any]:
    """The command map: ``{"id", "iat", "exp", "target", "action", "params"}`` (times in whole seconds)."""
    issued = int(time.time() if now is None else now)
    command: dict[str, Any] = {
        "id": command_id or uuid.uuid4().hex[:16],
        "iat": issued,
        "exp": issued + max(1, int(lifetime)),
        "target": target,
        "action": action,
    }
    if params:
        command["params"] = params
    return command


class Signer:
    """Signs command maps with one operator key.

    Args:
        key: the operator's Ed25519 private key.
        kid: the key id the gateway knows it by (its ``[[key]]`` id).
    """

    def __init__(self, key: Ed25519PrivateKey, kid: str) -> None:
        self.key = key
        self.kid = kid

    def sign(self, command: dict[str, Any]) -> bytes:
        """The COSE_Sign1 envelope of ``command``, its map in core deterministic CBOR (RFC 8949 4.2.1).

        The same command always gives the same payload bytes, whatever the order its map was built in, on
        CPython or on a node.
        """
        return cose.sign1(cbor.dumps(command, True), self.key, self.kid.encode())

    def envelope(self, target: str, action: str, params: dict[str, Any] | None = None, **kw: Any) -> bytes:
        """Build and sign a command in one step (keywords as for :func:`build_command`)."""
        return self.sign(build_command(target, action, params, **kw))


def mqtt_version(protocol: str) -> aiomqtt.ProtocolVersion:
    """aiomqtt's protocol constant for "5" or "3.1.1"."""
    return aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311


async def publish_and_wait(
    *, broker: str, site: str, gateway: str, payload: bytes, command_id: str | None,
    wait: float = 10.0, protocol: str = "5", progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Publish one envelope (QoS 1) and return the result carrying ``command_id``, or a timeout map.

    ``command_id`` None takes the first result with a null id (a payload too broken to show one). Interim
    maps of a running command (``status`` ``"running"``: an update's progress) go to ``progress``.
    """
    url = urlsplit(broker)
    if url.scheme != "mqtt" or not url.hostname:
        raise ValueError(f"broker must look like mqtt://HOST:PORT, got {broker!r}")
    topics = Topics(site, gateway)
    async with aiomqtt.Client(url.hostname, url.port or 1883, protocol=mqtt_version(protocol)) as client:
        await client.subscribe(topics.result, qos=1)
        await client.publish(topics.cmd, payload, qos=1)
        try:
            async with asyncio.timeout(wait):
                async for message in client.messages:
                    result = cbor2.loads(message.payload)
                    if isinstance(result, dict) and result.get("id") == command_id:
                        if result.get("status") != "running":
                            return result
                        if progress is not None:
                            progress(result)
        except TimeoutError:
            pass
    return {"id": command_id, "status": "timeout", "detail": f"no result within {wait} s"}


async def send_command(
    *,
    broker: str,
    site: str,
    gateway: str,
    signer: Signer,
    target: str,
    action: str,
    params: dict[str, Any] | None = None,
    wait: float = 10.0,
    protocol: str = "5",
    command_id: str | None = None,
    lifetime: float = LIFETIME,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Build, sign and publish one command; return its result map, or ``{"status": "timeout"}``.

    ``progress`` gets the interim maps of a long command (an update's steps) as they arrive.
    """
    command = build_command(target, action, params, command_id, lifetime=lifetime)
    return await publish_and_wait(
        broker=broker, site=site, gateway=gateway, payload=signer.sign(command),
        command_id=command["id"], wait=wait, protocol=protocol, progress=progress,
    )
