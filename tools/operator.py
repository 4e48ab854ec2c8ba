"""The operator's side of a command: build it, publish it, wait for its result.

Used by ``streetedge cmd`` and by the demo. Commands are CBOR maps on the
gateway's ``cmd`` topic (see docs/upstream.md); the result comes back on its
``result`` topic with the same id.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import cbor2

from gateway.topics import Topics


def build_command(target: str, action: str, params: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
    """The command map: ``{"id", "target", "action", **params}``."""
    return {"id": command_id or uuid.uuid4().hex[:16], "target": target, "action": action, **params}


def mqtt_version(protocol: str) -> aiomqtt.ProtocolVersion:
    """aiomqtt's protocol constant for "5" or "3.1.1"."""
    return aiomqtt.ProtocolVersion.V5 if protocol == "5" else aiomqtt.ProtocolVersion.V311


async def send_command(
    *,
    broker: str,
    site: str,
    gateway: str,
    target: str,
    action: str,
    params: dict[str, Any],
    wait: float = 10.0,
    protocol: str = "5",
    command_id: str | None = None,
) -> dict[str, Any]:
    """Publish one command (QoS 1) and return its result map, or ``{"status": "timeout"}``."""
    url = urlsplit(broker)
    if url.scheme != "mqtt" or not url.hostname:
        raise ValueError(f"broker must look like mqtt://HOST:PORT, got {broker!r}")
    topics = Topics(site, gateway)
    command = build_command(target, action, params, command_id)
    async with aiomqtt.Client(url.hostname, url.port or 1883, protocol=mqtt_version(protocol)) as client:
        await client.subscribe(topics.result, qos=1)
        await client.publish(topics.cmd, cbor2.dumps(command), qos=1)
        try:
            async with asyncio.timeout(wait):
                async for message in client.messages:
                    result = cbor2.loads(message.payload)
                    if isinstance(result, dict) and result.get("id") == command["id"]:
                        return result
        except TimeoutError:
            pass
    return {"id": command["id"], "status": "timeout", "detail": f"no result within {wait} s"}
