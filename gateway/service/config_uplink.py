"""Configuration of the way up: broker URLs and TLS (``[broker]``), the outbox and data profile (``[delivery]``).

::

    [broker]
    url = ["mqtts://broker-a.city:8883", "mqtts://broker-b.city:8883"]   # or one string
    tls = { ca = "/etc/streetedge/ca.pem", cert = "/etc/streetedge/gw.pem", key = "/etc/streetedge/gw.key" }

    [delivery]
    outbox = "/var/lib/streetedge/outbox.db"
    budget_mb = 256
    profile = "compact"
    batch_interval = 60.0
    drain_rate = 50.0

The structs are part of :class:`gateway.service.config.Config`; :func:`check_broker` is
its cross-field rule for ``[broker]``.
"""

from __future__ import annotations

from typing import Annotated, Literal, NamedTuple
from urllib.parse import urlsplit

import msgspec

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
"""Port of each URL scheme when the URL gives none."""


class TlsConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[broker] tls``: files for ``mqtts://`` connections (PEM)."""

    ca: str = ""
    """CA certificate(s) the broker's certificate must chain to; empty: the system's trusted CAs."""
    cert: str = ""
    """Client certificate presented to the broker (with ``key``); empty: none."""
    key: str = ""
    """Private key of ``cert``."""


class DeliveryConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """``[delivery]``: the durable outbox, the data profile and the pace of replay."""

    outbox: str = ""
    """SQLite file of the outbox; empty: a temporary file removed at stop (nothing survives a restart)."""
    budget_mb: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 256.0
    """Disk budget of the outbox, MiB; beyond it the oldest readings go first (and are counted upstream)."""
    synchronous: Literal["NORMAL", "FULL"] = "FULL"
    """``NORMAL`` survives a crash of the process; ``FULL`` also a power cut (an fsync per commit)."""
    profile: Literal["senml", "compact"] = "compact"
    """Data profile: ``compact`` (batched, ~1-2 bytes a reading, read back into SenML with the birth) or ``senml``
    (one SenML-CBOR pack per poll on ``<root>/data/<node>``, for consumers that want the standard format)."""
    batch_interval: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 10.0
    """Compact profile: seconds live polls are gathered into one message (the poll interval is a good choice)."""
    batch_max: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    """Most polls in one compact message (live or replayed)."""
    drain_rate: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 50.0
    """Backlog polls replayed per second after an outage, on top of live data (which always goes first)."""


class BrokerUrl(NamedTuple):
    """One broker address: host, port, and whether the connection uses TLS."""

    host: str
    port: int
    tls: bool

    def __str__(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_url(url: str) -> BrokerUrl:
    """``mqtt://host[:port]`` or ``mqtts://host[:port]`` -> BrokerUrl; ValueError says what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ValueError(f"expected mqtt://host[:port] or mqtts://host[:port], got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"bad port in {url!r}") from None
    if not parts.hostname or parts.path not in {"", "/"} or parts.query or parts.username:
        raise ValueError(f"expected {parts.scheme}://host[:port], got {url!r}")
    return BrokerUrl(parts.hostname, port or DEFAULT_PORTS[parts.scheme], parts.scheme == "mqtts")


def url_list(url: str | list[str]) -> list[str]:
    """The configured URL or URLs as a list."""
    return [url] if isinstance(url, str) else list(url)


def check_broker(url: str | list[str], tls: TlsConfig | None) -> tuple[str, str] | None:
    """The ``[broker]`` rules across keys: ``(key path, problem)`` of the first broken one, or None."""
    urls = url_list(url)
    if not urls:
        return "broker.url", "give at least one broker URL"
    parsed = []
    for i, text in enumerate(urls):
        where = "broker.url" if isinstance(url, str) else f"broker.url[{i}]"
        try:
            parsed.append(parse_url(text))
        except ValueError as exc:
            return where, str(exc)
    if tls is not None:
        if bool(tls.cert) != bool(tls.key):
            return "broker.tls", "give both cert and key (a client certificate needs its private key)"
        if not any(p.tls for p in parsed):
            return "broker.tls", "TLS files are given but no URL is mqtts://"
    return None
