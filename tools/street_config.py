"""The gateway configuration that attaches to a virtual street.

The demo, the benches and the end-to-end tests all run the gateway from a real
TOML file written here, so they exercise the same loader as a street cabinet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def gateway_toml(
    manifest: dict[str, Any],
    *,
    broker_url: str,
    protocol: str = "5",
    site: str = "demo-site",
    gateway: str = "cabinet-1",
    interval: float = 1.0,
    timeout: float = 0.3,
    groups: dict[str, list[str]] | None = None,
    ble_counters: str = "ble-counters.sqlite",
) -> str:
    """TOML text of a gateway configuration polling every node of the manifest.

    The manifest's BLE nodes (its ``"ble"`` part, :mod:`tools.sim.radio_street`) are heard on the radio
    its ``adapter`` names, not polled; their replay windows go to ``ble_counters``.
    """
    ble = manifest.get("ble") or {"nodes": []}
    ble_units = {n["unit"] for n in ble["nodes"]}
    lines = [
        f'site = "{site}"',
        f'gateway = "{gateway}"',
        "",
        "[broker]",
        f'url = "{broker_url}"',
        f'protocol = "{protocol}"',
        "",
    ]
    for bus in manifest["buses"]:
        lines += [
            "[[bus]]",
            f'name = "{bus["name"]}"',
            f'device = "{bus["device"]}"',
            f"baud = {bus['baud']}",
            'parity = "N"',
            f"timeout = {timeout}",
            "",
        ]
    for node in manifest["nodes"]:
        if node["unit"] in ble_units:
            continue
        lines += [
            "[[node]]",
            f'id = "{node["id"]}"',
            f'bus = "{node["bus"]}"',
            f"unit = {node['unit']}",
            f'role = "{node["role"]}"',
            f"interval = {interval}",
            "",
        ]
    if ble["nodes"]:
        lines += ["[ble]", f'adapter = "{ble["adapter"]}"', f'counters = "{ble_counters}"', ""]
        for node in ble["nodes"]:
            lines += ["[[ble.node]]", f'id = "{node["id"]}"', f'address = "{node["address"]}"',
                      f'key = "{node["key"]}"', f'role = "{node["role"]}"', f"interval = {node['interval']}", ""]
    if groups:
        lines.append("[groups]")
        for name, members in groups.items():
            quoted = ", ".join(f'"{m}"' for m in members)
            lines.append(f'"{name}" = [{quoted}]')
        lines.append("")
    return "\n".join(lines)


def write_gateway_toml(path: Path, manifest: dict[str, Any], **kwargs: Any) -> Path:
    """Write :func:`gateway_toml` to ``path`` (BLE replay windows beside it) and return it."""
    kwargs.setdefault("ble_counters", str(path.resolve().parent / f"{path.stem}-ble-counters.sqlite"))
    path.write_text(gateway_toml(manifest, **kwargs))
    return path
