"""The gateway's configuration: one TOML file, checked whole before anything starts.

Example (``examples/gateway.toml`` documents every key)::

    site = "district-7"
    gateway = "cabinet-12"

    [broker]
    url = "mqtt://127.0.0.1:1883"
    protocol = "5"

    [[bus]]
    name = "bus0"
    device = "/dev/ttyUSB0"

    [[node]]
    id = "lamp-1"
    bus = "bus0"
    unit = 1
    role = "lamp"

    [groups]
    street-a = ["lamp-1"]

Every problem is reported as a :class:`ConfigError` whose message names the file,
the key path and the problem, e.g. ``config.toml: node[2].unit: expected an
integer 1..247, got 300`` or ``node[0]: unknown key 'intervall'; did you mean
'interval'?``. The structure is checked against the msgspec schema below (so the
schema is the single statement of what is allowed), then the cross-field rules.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import msgspec.inspect as mi

from gateway.analytics.settings import AnalyticsConfig
from gateway.contracts import ROLES
from gateway.errors import GatewayError
from gateway.profiles.registry import NodeProfileError, with_profiles
from gateway.service.config_ble import BleConfig, check_ble
from gateway.service.config_check import NAME_PATTERN, ProblemError, check, suggest
from gateway.service.config_commands import CommandsConfig, KeyConfig, check_commands
from gateway.service.config_dashboard import DashboardConfig, check_dashboard
from gateway.service.config_update import UpdateConfig
from gateway.service.config_uplink import DeliveryConfig, TlsConfig, check_broker, parse_url, url_list

Name = Annotated[str, msgspec.Meta(pattern=NAME_PATTERN, max_length=64)]
"""An identifier that goes into topics and SenML names: letters, digits, '_' and '-'."""

DEFAULT_PORT = 1883


class ConfigError(GatewayError, ValueError):
    """A configuration that cannot be used; the message names the file, the key path and the problem.

    Attributes:
        source: the file (or the ``source`` given to :func:`parse_config`).
        key: the key path, like ``node[2].unit``; empty when the problem is the whole file.
        problem: what is wrong, in a sentence.
    """

    def __init__(self, source: str, problem: str, *, key: str = "") -> None:
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


class BrokerConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[broker]``: where the uplink connects."""

    url: str | list[str] = "mqtt://127.0.0.1:1883"
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` (TLS), or a list of them tried in turn (failover)."""
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    """CA, client certificate and key for ``mqtts://`` URLs (``gateway.service.config_uplink``)."""
    protocol: Literal["5", "3.1.1"] = "5"
    """MQTT version: "5", or "3.1.1" for brokers that speak nothing newer."""
    client_id: Annotated[str, msgspec.Meta(max_length=128)] = ""
    """MQTT client identifier; empty means ``streetedge-<site>-<gateway>``."""
    keepalive: Annotated[int, msgspec.Meta(ge=5, le=3600)] = 30
    """Seconds between keep-alive pings."""
    session: Literal["clean", "persistent"] = "clean"
    """``persistent`` (MQTT 3.1.1 only): the broker keeps our command subscription across connections, as a
    clustered RabbitMQ must, whose clean-session queues die with their node (``docs/broker-cluster.md``)."""

    @property
    def urls(self) -> list[str]:
        """The broker URLs in the order they are tried."""
        return url_list(self.url)

    @property
    def host(self) -> str:
        """Host name or address of the first URL."""
        return parse_url(self.urls[0]).host

    @property
    def port(self) -> int:
        """TCP port of the first URL (1883, or 8883 for mqtts, when the URL gives none)."""
        return parse_url(self.urls[0]).port


class BusConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[bus]]``: one RS-485 line driven through a serial device, or one Modbus TCP endpoint."""

    name: Name
    """Name nodes refer to, and the ``bus:<name>`` command target."""
    type: Literal["rtu", "tcp"] = "rtu"
    """``rtu``: a serial line (``device``); ``tcp``: a Modbus TCP server (``host``, ``port``)."""
    device: str = ""
    """Serial device path, e.g. ``/dev/ttyUSB0`` (a pseudo-terminal on the virtual street); rtu only."""
    host: str = ""
    """Modbus TCP server address (a device, or a TCP-to-RTU gateway for many units); tcp only."""
    port: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 502
    """Modbus TCP port; tcp only."""
    concurrency: Annotated[int, msgspec.Meta(ge=1, le=64)] = 4
    """Polls in flight at once on a tcp bus (requests are pipelined); an rtu line carries one."""
    backoff: Annotated[float, msgspec.Meta(ge=0, le=10)] = 0.05
    """Seconds before the first retry of a failed request; doubled for each further retry."""
    baud: Annotated[int, msgspec.Meta(ge=300, le=4_000_000)] = 19200
    """Line rate in bit/s."""
    parity: Literal["N", "E", "O"] = "E"
    """Parity: the Modbus default is E (8E1); N needs 2 stop bits to conform."""
    stopbits: Literal[1, 2] = 1
    """Stop bits."""
    timeout: Annotated[float, msgspec.Meta(gt=0, le=30)] = 0.3
    """Seconds to wait for a node's answer to one request."""
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 1
    """Times a request is repeated after a timeout before the node counts as failed."""


class NodeConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[[node]]``: one Modbus node the gateway polls."""

    id: Name
    """Node id: the last part of its data topic and of its SenML base name."""
    bus: Name
    """Name of the ``[[bus]]`` the node hangs on."""
    unit: Annotated[int, msgspec.Meta(ge=1, le=247)]
    """Modbus unit (slave) address, 1..247."""
    role: str = "lamp"
    """Node role; picks the register map in ``protocols/roles``, or a shipped device profile by name."""
    profile: str = ""
    """A device profile file (``gateway/profiles``), relative to the configuration's folder; its name is the role."""
    interval: Annotated[float, msgspec.Meta(ge=0.01, le=86400)] = 1.0
    """Seconds between two polls of this node."""
    timeout: Annotated[float, msgspec.Meta(gt=0, le=30)] | None = None
    """Seconds to wait for this node's answer; None takes the bus's ``timeout``."""
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    """Retries of a failed request to this node; None takes the bus's ``retries``."""


class HttpConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[http]``: the local endpoint with ``/health`` and Prometheus ``/metrics``."""

    enabled: bool = True
    """Serve the endpoint."""
    listen: Annotated[str, msgspec.Meta(min_length=1)] = "127.0.0.1"
    """Address to bind; loopback by default, so only the cabinet itself can read it."""
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 9480
    """TCP port (0 picks a free one, for tests)."""


class LoggingConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[logging]``: how the daemon writes its log (to standard error, for journald)."""

    format: Literal["text", "json"] = "text"
    """``text`` for people, ``json`` for one JSON object per line (ts, level, logger, message, fields)."""
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lowest level written."""


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """The whole gateway configuration."""

    site: Name
    """Site (district) id: part of every topic and SenML name."""
    gateway: Name
    """This gateway's id within the site."""
    broker: BrokerConfig = msgspec.field(default_factory=BrokerConfig)
    """MQTT uplink."""
    bus: list[BusConfig] = msgspec.field(default_factory=list)
    """Serial buses (``[[bus]]``)."""
    node: list[NodeConfig] = msgspec.field(default_factory=list)
    """Polled nodes (``[[node]]``)."""
    groups: dict[Name, list[Name]] = msgspec.field(default_factory=dict)
    """Named groups of node ids, the ``group:<name>`` command targets."""
    http: HttpConfig = msgspec.field(default_factory=HttpConfig)
    """Local health and metrics endpoint."""
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    """Log format and level."""
    delivery: DeliveryConfig = msgspec.field(default_factory=DeliveryConfig)
    """Outbox, data profile and replay pace (``gateway.service.config_uplink``)."""
    commands: CommandsConfig = msgspec.field(default_factory=CommandsConfig)
    """Command freshness rules, replay database and audit log (``gateway.service.config_commands``)."""
    key: list[KeyConfig] = msgspec.field(default_factory=list)
    """Trusted operator keys and their scopes (``[[key]]``)."""
    dashboard: DashboardConfig = msgspec.field(default_factory=DashboardConfig)
    """The cabinet dashboard (``gateway.service.config_dashboard``)."""
    ble: BleConfig = msgspec.field(default_factory=BleConfig)
    """BLE nodes heard through their adverts (``gateway.service.config_ble``)."""
    analytics: AnalyticsConfig = msgspec.field(default_factory=AnalyticsConfig)
    """Detectors per node class and their thresholds (``gateway.analytics.settings``)."""
    update: UpdateConfig = msgspec.field(default_factory=UpdateConfig)
    """Update packages for the ``update`` command (``gateway.service.config_update``)."""

    def bus_named(self, name: str) -> BusConfig:
        """The ``[[bus]]`` called ``name`` (KeyError if there is none)."""
        for bus in self.bus:
            if bus.name == name:
                return bus
        raise KeyError(name)

    def nodes_on(self, bus: str) -> list[NodeConfig]:
        """The nodes of the bus called ``bus``, in configuration order."""
        return [n for n in self.node if n.bus == bus]


def load_config(path: Path) -> Config:
    """Read and check the TOML configuration at ``path``; ConfigError says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "no such configuration file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read the configuration file: {exc}") from exc
    return parse_config(text, source=str(path), base=path.parent)


_config_type = functools.cache(lambda: mi.type_info(Config))  # ~10 ms to build, more than a parse: once


def parse_config(text: str, *, source: str = "config", base: Path | None = None) -> Config:
    """Parse and check configuration TOML text; ``source`` prefixes errors, relative profile paths start at ``base``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, f"not valid TOML: {exc}") from exc
    try:
        check(raw, _config_type(), "")
        config = msgspec.convert(raw, Config)
        return _cross_check(msgspec.structs.replace(config, node=with_profiles(config.node, base or Path())))
    except (ProblemError, NodeProfileError) as problem:
        raise ConfigError(source, problem.message, key=problem.path) from None
    except msgspec.ValidationError as exc:  # only if _check missed a rule msgspec enforces
        raise ConfigError(source, str(exc)) from exc


def _cross_check(config: Config) -> Config:
    """Rules that span keys: references resolve, names and addresses are unique."""
    tls = config.broker.tls
    problem = check_broker(config.broker.url, tls if (tls.ca or tls.cert or tls.key) else None)
    if config.broker.session == "persistent" and config.broker.protocol != "3.1.1":
        problem = "broker.session", 'a persistent session needs protocol = "3.1.1" (MQTT 5 sessions: not done)'
    if problem:
        raise ProblemError(*problem)

    _unique("bus", "name", [b.name for b in config.bus])
    _check_buses(config.bus)
    _unique("node", "id", [n.id for n in config.node])
    bus_names = [b.name for b in config.bus]
    seen: dict[tuple[str, int], int] = {}
    for i, node in enumerate(config.node):
        if node.bus not in bus_names:
            declared = ", ".join(bus_names) or "none"
            raise ProblemError(
                f"node[{i}].bus",
                f"unknown bus {node.bus!r}{suggest(node.bus, bus_names)} (declared: {declared})",
            )
        other = seen.setdefault((node.bus, node.unit), i)
        if other != i:
            raise ProblemError(
                f"node[{i}].unit",
                f"unit {node.unit} on bus {node.bus!r} is already node[{other}] "
                f"({config.node[other].id!r})",
            )
        if node.role not in ROLES:
            raise ProblemError(
                f"node[{i}].role",
                f"unknown role {node.role!r}{suggest(node.role, ROLES)} (known: {', '.join(ROLES)})",
            )
    node_ids = [n.id for n in config.node] + [n.id for n in config.ble.node]  # BLE nodes join groups too
    for group, members in config.groups.items():
        for j, member in enumerate(members):
            if member not in node_ids:
                raise ProblemError(
                    f"groups.{group}[{j}]", f"unknown node {member!r}{suggest(member, node_ids)}"
                )
    problem = check_commands(config) or check_dashboard(config) or check_ble(config)
    if problem:
        raise ProblemError(*problem)
    if not config.broker.client_id:
        broker = msgspec.structs.replace(
            config.broker, client_id=f"streetedge-{config.site}-{config.gateway}"
        )
        config = msgspec.structs.replace(config, broker=broker)
    return config


def _check_buses(buses: Sequence[BusConfig]) -> None:
    """An rtu bus needs a device, a tcp bus a host; neither shares its line or endpoint."""
    lines: dict[str, int] = {}
    for i, bus in enumerate(buses):
        if bus.type == "rtu":
            if not bus.device:
                raise ProblemError(f"bus[{i}]", "missing required key 'device' (an rtu bus is a serial line)")
            if bus.host:
                raise ProblemError(f"bus[{i}].host", "only a tcp bus has a host (this bus is type 'rtu')")
            where, key = bus.device, "device"
        else:
            if not bus.host:
                raise ProblemError(f"bus[{i}]", "missing required key 'host' (a tcp bus is a Modbus TCP server)")
            if bus.device:
                raise ProblemError(f"bus[{i}].device", "only an rtu bus has a device (this bus is type 'tcp')")
            where, key = f"{bus.host}:{bus.port}", "host"
        j = lines.setdefault(where, i)
        if j != i:
            raise ProblemError(f"bus[{i}].{key}", f"{where!r} is already used by bus[{j}]")


def _unique(table: str, key: str, values: Sequence[str]) -> None:
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        j = first.setdefault(value, i)
        if j != i:
            raise ProblemError(f"{table}[{i}].{key}", f"{value!r} is already used by {table}[{j}]")
