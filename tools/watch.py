"""``streetedge watch``: a real gateway's street, live in the terminal, from what it publishes over MQTT.

It subscribes to ``streetedge/v1/<site>/<gateway>/#`` (read-only: it never
publishes) and keeps a picture of the street: the gateway's state and session,
each node (role, online or offline with its last error, latest values, polls
seen), the nodes' events (alarms), command results and the delivery counters.
Compact messages are read against the retained gateway birth they cite. A lost
broker connection is retried and shown, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import cbor2
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from gateway.delivery import compact
from gateway.mqtt.topics import Topics
from gateway.service.config_uplink import parse_url
from protocols import senml
from tools.exit_codes import CliError, Exit

KEY_VALUES = {
    "lamp": ("dim_level", "relay", "power", "voltage", "energy", "temperature"),
    "meter": ("volume", "flow", "reverse_volume", "battery"),
    "env": ("temperature", "humidity", "pressure", "pm25", "pm10", "noise"),
}
"""The values shown per role, in this order (a role not listed: its first SHOWN_VALUES)."""
SHOWN_VALUES = 6
"""Values shown for a node whose role has no KEY_VALUES."""
RECONNECT_S = 2.0
"""Seconds between two attempts to reach a lost broker."""


@dataclass(frozen=True)
class Target:
    """Which gateway to watch, and through which broker."""

    broker: str
    protocol: str
    site: str
    gateway: str
    ca: str = ""


def target_from(*, config: str | None, broker: str | None, site: str | None, gateway: str | None,
                protocol: str | None) -> Target:
    """The gateway to watch from a configuration file and/or options (options win); CliError if incomplete."""
    base = Target("mqtt://127.0.0.1:1883", "5", "", "")
    if config:
        from gateway.service.config import ConfigError, load_config

        try:
            cfg = load_config(Path(config))
        except ConfigError as exc:
            raise CliError(str(exc)) from None
        base = Target(cfg.broker.urls[0], cfg.broker.protocol, cfg.site, cfg.gateway, cfg.broker.tls.ca)
    target = Target(broker or base.broker, protocol or base.protocol, site or base.site, gateway or base.gateway,
                    base.ca)
    if not (target.site and target.gateway):
        raise CliError("say which gateway: -c CONFIG, or --site and --gateway")
    try:
        parse_url(target.broker)
    except ValueError as exc:
        raise CliError(f"--broker: {exc}") from None
    return target


@dataclass
class NodeView:
    """What is known of one node."""

    id: str
    role: str = ""
    online: bool | None = None
    error: str = ""
    values: dict[str, str] = field(default_factory=dict)
    polls: int = 0
    last_poll: float = 0.0
    firmware: Any = None


class Street:
    """The street as a gateway's messages describe it; :meth:`feed` takes one message at a time."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.state: dict[str, Any] = {}
        self.profile = ""
        self.nodes: dict[str, NodeView] = {}
        self.alarms: deque[str] = deque(maxlen=4)
        self.results: deque[dict[str, Any]] = deque(maxlen=5)
        self.delivery: dict[str, Any] = {}
        self.messages = 0
        self.undecodable = 0
        self.last_problem = ""
        self._births: dict[bytes, dict[str, Any]] = {}

    def node(self, node_id: str) -> NodeView:
        """The view of ``node_id`` (created on first mention)."""
        view = self.nodes.get(node_id)
        if view is None:
            view = self.nodes[node_id] = NodeView(node_id)
        return view

    def feed(self, topic: str, payload: bytes) -> str:
        """Take one message; a one-line summary of it (kept short for ``--plain``)."""
        self.messages += 1
        try:
            return self._feed(topic[len(self.topics.root) + 1:], payload)
        except (cbor2.CBORError, ValueError, KeyError, TypeError, IndexError) as exc:  # a payload it cannot read
            self.undecodable += 1
            self.last_problem = f"{topic}: {exc}"
            return f"{topic}: cannot decode: {exc}"

    def _feed(self, part: str, payload: bytes) -> str:
        if not payload:  # a retained message being cleared
            return f"{part}: cleared"
        body = cbor2.loads(payload)
        words = part.split("/")
        if part == "state":
            self.state = body
            return f"gateway {'online' if body.get('online') else 'OFFLINE'} (session {body.get('session')})"
        if part == "birth":
            self._births[body["birth"]] = body
            self.profile = str(body.get("profile", ""))
            schemas = body.get("schemas", {})
            for row in body.get("nodes", []):
                node_id = row[0] if isinstance(row, list) else str(row)
                view = self.node(node_id)
                schema = schemas.get(row[1]) if isinstance(row, list) and len(row) > 1 else None
                if isinstance(schema, list) and schema and isinstance(schema[0], str):
                    view.role = schema[0]
            return f"gateway birth: {len(body.get('nodes', []))} node(s), profile {self.profile}"
        if words[0] == "birth" and len(words) == 2:
            view = self.node(words[1])
            view.role, view.firmware = str(body.get("role", view.role)), body.get("firmware")
            return f"node birth {words[1]}: {view.role}"
        if words[0] == "node" and len(words) == 3 and words[2] == "state":
            view = self.node(words[1])
            view.online, view.error = bool(body.get("online")), str(body.get("error") or "")
            return f"node {words[1]} {'online' if view.online else 'OFFLINE: ' + view.error}"
        if words[0] == "data" and len(words) == 2:
            self._poll(senml.resolve(senml.from_labels(body)))
            return f"data {words[1]}: {len(body)} record(s)"
        if part == "compact":
            birth = self._births.get(body[3])
            if birth is None:
                raise ValueError("compact message of a gateway birth not seen yet")
            packs = compact.to_senml(payload, birth)
            for pack in packs:
                self._poll(senml.resolve(pack))
            return f"compact: {len(packs)} poll(s)"
        if words[0] == "event" and len(words) == 2:
            events = 0
            for record in senml.resolve(senml.from_labels(body)):
                name = str(record["n"]).rsplit(":", 1)[-1]
                if name == "event":  # each event starts with its name; its value follows
                    events += 1
                    self.alarms.append(f"{_clock(record.get('t'))} {words[1]} {record.get('vs')}")
                elif name == "event_value" and events:
                    self.alarms[-1] += f" ({_value(record)})"
                elif name in ("flag", "report", "update"):  # analytics (rule, detail); a roll-out step (step, why)
                    events += 1
                    self.alarms.append(f"{_clock(record.get('t'))} {words[1]} {name} {record.get('vs')}")
                elif name == "update_command" and events:
                    self.alarms[-1] += f" ({record.get('vs')})"
                elif name in ("flag_detail", "report_detail", "update_detail") and events:
                    self.alarms[-1] += f": {record.get('vs')}"
            return f"event {words[1]}: {events} event(s)"
        if part == "result":
            if self.results and body.get("id") == self.results[-1].get("id") and self.results[-1].get("status") \
                    == "running":
                self.results.pop()  # an update's steps replace each other until its result comes
            self.results.append(body)
            if body.get("status") == "running":  # an update's step: phase, node, progress
                return (f"result {body.get('id')}: running {body.get('phase')} {body.get('node') or ''} "
                        f"{body.get('done')}/{body.get('total')} {body.get('detail') or ''}").rstrip()
            return f"result {body.get('id')}: {body.get('status')} {body.get('reason') or ''}".rstrip()
        if part == "delivery":
            self.delivery = body
            return f"delivery: stored {body.get('stored')}, backlog {body.get('depth')}"
        return f"{part}: {type(body).__name__}"

    def _poll(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        node_id = str(records[0]["n"]).split(":")[-2]
        view = self.node(node_id)
        view.polls += 1
        for record in records:
            view.values[str(record["n"]).rsplit(":", 1)[-1]] = _value(record)
            view.last_poll = max(view.last_poll, float(record.get("t", 0)))

    def shown(self, view: NodeView) -> list[tuple[str, str]]:
        """The values of a node worth a glance: its role's KEY_VALUES, else its first few."""
        names = KEY_VALUES.get(view.role) or tuple(view.values)[:SHOWN_VALUES]
        return [(name, view.values[name]) for name in names if name in view.values]


def _value(record: dict[str, Any]) -> str:
    for key in ("v", "vb", "vs"):
        if key in record:
            value = record[key]
            text = f"{value:.1f}" if isinstance(value, float) else str(value)
            return f"{text} {record.get('u', '')}".rstrip()
    return "?"


def _clock(t: Any) -> str:
    return time.strftime("%H:%M:%S", time.localtime(float(t))) if isinstance(t, int | float) else "--:--:--"


def render(street: Street, target: Target, connected: bool) -> Group:
    """The screen: header, nodes, alarms, command results, delivery counters."""
    state = street.state
    gateway = ("[green]online" if state.get("online") else "[red]OFFLINE") if state else "[yellow]no state yet"
    head = Text.from_markup(
        f"[bold]streetedge watch[/bold]  {target.site}/{target.gateway}  gateway {gateway}[/]"
        f"  session {state.get('session', '-')}  broker {target.broker} "
        + ("[green]connected[/]" if connected else "[red]unreachable[/]")
        + f"  messages {street.messages}"
    )
    nodes = Table(title="nodes", expand=False)
    # On a narrow terminal the error and the values give way first, never the node's id or state.
    widest = max((len(v.id) for v in street.nodes.values()), default=4)
    for col, width in (("node", widest), ("role", 5), ("state", 7), ("polls", 5), ("last poll", 9)):
        nodes.add_column(col, no_wrap=True, min_width=width)
    nodes.add_column("values / last error", min_width=20)
    for view in sorted(street.nodes.values(), key=lambda v: v.id):
        status = {True: "[green]online", False: "[red]OFFLINE", None: "[yellow]-"}[view.online]
        values = Text(view.error, style="red") if view.online is False else Text(
            "  ".join(f"{k}={v}" for k, v in street.shown(view)))
        nodes.add_row(view.id, view.role, status, str(view.polls), _clock(view.last_poll or None), values)
    results = Table(title="command results (newest last)", expand=False)
    for col in ("id", "status", "reason"):
        results.add_column(col, no_wrap=True)
    results.add_column("detail", overflow="ellipsis", no_wrap=True, max_width=60)
    for r in street.results:
        colour = {"done": "green", "rejected": "yellow", "running": "cyan"}.get(str(r.get("status")), "red")
        results.add_row(str(r.get("id")), f"[{colour}]{r.get('status')}", str(r.get("reason") or ""),
                        str(r.get("detail") or ""))
    d = street.delivery
    dropped = d.get("dropped", {}) if isinstance(d.get("dropped"), dict) else {}
    delivery = Text(
        f"delivery: stored {d.get('stored', '-')}  backlog {d.get('depth', '-')}  dropped readings "
        f"{dropped.get('readings', '-')} events {dropped.get('events', '-')}  duplicates {d.get('duplicates', '-')}"
        f"  profile {street.profile or '-'}"
    )
    alarms = Text("alarms (newest last): " + ("; ".join(street.alarms) if street.alarms else "none"))
    parts: list[Any] = [head, nodes, alarms, results, delivery]
    if street.undecodable:
        parts.append(Text(f"undecodable messages: {street.undecodable} (last: {street.last_problem})", style="red"))
    parts.append(Text("Ctrl-C quits", style="dim"))
    return Group(*parts)


async def _watch(target: Target, seconds: float, plain: bool, console: Console) -> None:
    topics = Topics(target.site, target.gateway)
    street = Street(topics)
    url = parse_url(target.broker)
    context = ssl.create_default_context(cafile=target.ca or None) if url.tls else None
    version = aiomqtt.ProtocolVersion.V5 if target.protocol == "5" else aiomqtt.ProtocolVersion.V311
    deadline = time.monotonic() + seconds if seconds > 0 else None
    connected = False
    live = None if plain else Live(render(street, target, connected), console=console, refresh_per_second=2)

    def show(line: str) -> None:
        if live is not None:
            live.update(render(street, target, connected))
        else:
            console.print(line, markup=False, highlight=False)

    with live if live is not None else contextlib.nullcontext():
        while deadline is None or time.monotonic() < deadline:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(left):
                    async with aiomqtt.Client(url.host, url.port, identifier=f"streetedge-watch-{os.getpid()}",
                                              protocol=version, tls_context=context) as client:
                        await client.subscribe(topics.root + "/#", qos=1)
                        connected = True
                        show(f"connected to {target.broker}, watching {topics.root}/#")
                        async for message in client.messages:
                            show(street.feed(str(message.topic), bytes(message.payload)))
            except TimeoutError:
                break
            except aiomqtt.MqttError as exc:
                if connected or street.messages == 0:
                    connected = False
                    show(f"broker {target.broker}: {exc}; retrying every {RECONNECT_S:g} s")
                await asyncio.sleep(RECONNECT_S)


def run_watch(target: Target, *, seconds: float = 0, plain: bool = False) -> int:
    """Watch until Ctrl-C (or ``seconds``); the exit code."""
    console = Console()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_watch(target, seconds, plain, console))
    return Exit.OK
