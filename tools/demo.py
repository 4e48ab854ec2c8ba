"""``streetedge demo``: a virtual street, the gateway and a broker, shown live.

Starts a local broker (Mosquitto, or the embedded amqtt broker when Mosquitto is
missing), a virtual street of lamp nodes running the real firmware, BLE water
meters (the real meter firmware advertising on the virtual radio, served GATT
commands), and the gateway (in this process, from a real TOML file, its bleak
code on a Bumble host on the radio's HCI port, the ``[ble] adapter`` a daemon
started with ``streetedge run`` would use). An operator script sends a command every
few seconds so that the screen shows commands and their effect, the BLE meters'
threshold among them. Ctrl-C stops everything, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gateway.service.config import load_config
from gateway.service.daemon import Gateway
from gateway.service.stats import GatewayStats
from tools.broker import LocalBroker, mosquitto_path
from tools.dashboard_setup import enable_dashboard, free_port
from tools.keys import trust
from tools.operator import Signer, send_command
from tools.sim.radio_street import RadioStreet
from tools.sim.street import VirtualStreet
from tools.street_config import write_gateway_toml

SITE = "demo-site"
GATEWAY = "cabinet-1"
COMMAND_PERIOD = 8.0
BLE_INTERVAL_MS = 1000
"""Advert interval of the demo's BLE meters."""


def _script(node_ids: list[str], ble_ids: list[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """The operator's round: dim the street, a single lamp, switch one off and on, a BLE meter's burst
    threshold over GATT, full again."""
    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("all", "dim", {"level": 40}),
        ("group:north", "dim", {"level": 70}),
        (node_ids[0], "switch", {"on": False}),
        (node_ids[0], "switch", {"on": True}),
        *[(ble_id, "set_config", {"burst_flow": 2.5}) for ble_id in ble_ids[:1]],
        ("all", "dim", {"level": 100}),
        ("lamp-999", "dim", {"level": 10}),  # an unknown node: the gateway refuses it
    ]
    return itertools.cycle(steps)


def _view(stats: GatewayStats, broker: LocalBroker | str, rate: float) -> Group:
    head = Text.assemble(
        ("streetedge demo  ", "bold"),
        (f"broker {broker if isinstance(broker, str) else f'{broker.kind} {broker.url}'}  ", ""),
        ("connected" if stats.broker_connected else "broker down", "green" if stats.broker_connected else "red"),
        f"  readings acked {stats.readings_acked}  ({rate:,.0f}/s)  queue drops {stats.queue_drops}",
    )
    nodes = Table(expand=False, title="nodes")
    for col in ("node", "bus", "state", "dim %", "relay", "power W", "voltage V", "energy Wh", "temp °C", "seq",
                "polls"):
        nodes.add_column(col, justify="right" if col not in ("node", "bus", "state") else "left")
    for n in stats.nodes.values():
        v = n.values
        state = {True: "[green]online", False: "[red]offline", None: "[yellow]…"}[n.online]
        if n.bus == "ble":  # a BLE meter: its adverts' readings
            nodes.add_row(n.id, n.bus, state, "", "", "", f"{v.get('battery', 0):.2f}",
                          f"{v.get('volume', 0):.0f} l", "", str(v.get("seq", "")), str(n.polls))
            continue
        nodes.add_row(
            n.id, n.bus, state, str(v.get("dim_level", "")), "on" if v.get("relay") else "off",
            f"{v.get('power', 0):.1f}", f"{v.get('voltage', 0):.1f}", str(v.get("energy", "")),
            f"{v.get('temperature', 0):.1f}", str(v.get("seq", "")), str(n.polls),
        )
    cmds = Table(title="commands (newest last)")
    for col in ("id", "status", "reason", "confirmed", "unconfirmed"):
        cmds.add_column(col)
    for r in list(stats.recent_results)[-6:]:
        colour = {"done": "green", "rejected": "yellow"}.get(str(r.get("status")), "red")
        cmds.add_row(
            str(r.get("id")), f"[{colour}]{r.get('status')}", str(r.get("reason") or ""),
            ", ".join(r.get("confirmed") or []), ", ".join(r.get("unconfirmed") or []),
        )
    return Group(head, nodes, cmds, Text("Ctrl-C stops everything", style="dim"))


async def _operator(
    broker_url: str, protocol: str, node_ids: list[str], ble_ids: list[str], signer: Signer, log: logging.Logger
) -> None:
    for target, action, params in _script(node_ids, ble_ids):
        await asyncio.sleep(COMMAND_PERIOD)
        result = await send_command(
            broker=broker_url, site=SITE, gateway=GATEWAY, signer=signer, target=target, action=action,
            params=params, protocol=protocol, wait=COMMAND_PERIOD,
        )
        log.debug("command %s %s %s -> %s", action, target, params, result.get("status"))


async def _run(config_path: Path, broker_url: str, protocol: str,
               shown: LocalBroker | str, seconds: float, console: Console, signer: Signer) -> None:
    config = load_config(config_path)
    gateway = Gateway(config)  # BLE through its [ble] adapter: the radio's HCI port, as a daemon would
    node_ids = [n.id for n in config.node]
    task = asyncio.create_task(gateway.run(), name="gateway")
    operator = asyncio.create_task(
        _operator(broker_url, protocol, node_ids, [n.id for n in config.ble.node], signer,
                  logging.getLogger("demo.operator")), name="operator"
    )
    deadline = time.monotonic() + seconds if seconds > 0 else None
    window: deque[tuple[float, int]] = deque(maxlen=20)  # 10 s of samples for a steady rate
    rate = 0.0
    try:
        with Live(_view(gateway.stats, shown, rate), console=console, refresh_per_second=4) as live:
            while not task.done() and (deadline is None or time.monotonic() < deadline):
                await asyncio.sleep(0.5)
                window.append((time.monotonic(), gateway.stats.readings_acked))
                (t0, a0), (t1, a1) = window[0], window[-1]
                rate = (a1 - a0) / (t1 - t0) if t1 > t0 else 0.0
                live.update(_view(gateway.stats, shown, rate))
    finally:
        operator.cancel()
        gateway.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await operator
        await task
    console.print(  # one line, however narrow the terminal: scripts read it
        f"demo stopped: {gateway.stats.readings_acked} readings acknowledged by the broker, "
        f"commands {dict(gateway.stats.commands)}", soft_wrap=True,
    )


def run_demo(*, nodes: int = 8, ble: int = 2, broker: str = "auto", seconds: float = 0,
             workdir: Path = Path(".run/demo")) -> int:
    """Run the demo until Ctrl-C (or ``seconds``); returns the process exit code."""
    console = Console()
    logging.getLogger().setLevel(logging.WARNING)  # the live view is the output
    workdir.mkdir(parents=True, exist_ok=True)
    local: LocalBroker | None = None
    shown: LocalBroker | str
    if broker.startswith("mqtt://"):
        broker_url, protocol, shown = broker, "5", broker
    else:
        if broker == "auto" and not mosquitto_path():
            console.print("[yellow]Mosquitto is not installed: using the embedded broker (amqtt, MQTT 3.1.1).")
        local = LocalBroker(broker if broker in ("mosquitto", "amqtt") else "auto")  # type: ignore[arg-type]
        local.start()
        broker_url, protocol, shown = local.url, local.protocol, local
    try:
        console.print(f"starting a virtual street of {nodes} lamp nodes and {ble} BLE meters "
                      "(MicroPython unix port) ...")
        ble_units = list(range(nodes + 1, nodes + ble + 1))
        # Every node at the ESP32's 128K, its code in ROM (the street adds the image's size: flash on a chip).
        with VirtualStreet(workdir / "street", nodes=nodes + ble, roles=dict.fromkeys(ble_units, "meter"),
                           heapsize="128K") as street:

            async def main() -> None:
                # The BLE meters' radio runs in this event loop; the gateway reaches it over its HCI port.
                radio = RadioStreet(street, dict.fromkeys(ble_units, "meter"), interval_ms=BLE_INTERVAL_MS,
                                    node_settings={"alarm_repeat_ms": 2000})
                await radio.start()
                try:
                    manifest = await asyncio.to_thread(street.start)
                    if ble_units:
                        manifest["ble"] = radio.manifest()
                    ids = [n["id"] for n in manifest["nodes"] if n["unit"] not in ble_units]
                    config_path = write_gateway_toml(
                        workdir / "gateway.toml", manifest, broker_url=broker_url, protocol=protocol,
                        site=SITE, gateway=GATEWAY, groups={"north": ids[: max(1, len(ids) // 2)]},
                    )
                    # The default (compact) profile, one message a second: the live view's rate moves with the
                    # street. The BLE meters are heard on the virtual radio, not polled on the bus.
                    config_path.write_text(config_path.read_text() + "\n[delivery]\nbatch_interval = 1.0\n")
                    # The demo's operator key: made now, trusted by this gateway only, never written to disk.
                    signer = Signer(Ed25519PrivateKey.generate(), "demo-operator")
                    trust(config_path, workdir, signer.kid, signer.key)
                    page = enable_dashboard(config_path, workdir, port=free_port(), user="demo",
                                            history_interval=5.0)
                    console.print(f"gateway configuration: {config_path} (trusts the demo's operator key)")
                    console.print(f"[bold]dashboard: {page.url}  login: {page.user} / {page.password}[/bold]")
                    await _run(config_path, broker_url, protocol, shown, seconds, console, signer)
                finally:
                    await radio.stop()

            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(main())
    finally:
        if local is not None:
            local.stop()
    return 0
