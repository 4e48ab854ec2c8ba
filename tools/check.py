"""``streetedge check -c FILE``: is this configuration ready to run on this machine?

Checks, without starting the gateway or creating anything: the file itself
(as ``streetedge run`` would load it), the state files' directories (outbox,
replay database, audit log), each serial device (present, a character device,
readable and writable by this user), the TLS files, each Modbus TCP server
(a TCP connection) and each broker (a real MQTT connection, under its own
client id so that a running gateway's session is left alone). One line per
check; the exit code says whether all passed. Run it as the gateway's user,
before a reload::

    runuser -u streetedge -- streetedge check -c /etc/streetedge/gateway.toml
"""

from __future__ import annotations

import asyncio
import os
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import aiomqtt

from gateway.service.config import Config, ConfigError, load_config
from gateway.service.config_uplink import parse_url
from gateway.service.runner import state_file_findings
from gateway.transport.serial_device import current_user, device_problem
from tools.exit_codes import CliError, Exit

Finding = tuple[str, str | None]
"""What was checked, and the problem (None: fine)."""


def file_findings(config: Config) -> Iterator[Finding]:
    """State files, serial devices and TLS files."""
    for key, path, problem in state_file_findings(config):
        yield f"{key} {path}", problem
    for i, bus in enumerate(config.bus):
        if bus.type == "rtu":
            yield f"bus[{i}] {bus.name}: device {bus.device}", device_problem(bus.device)
    tls = config.broker.tls
    for name in ("ca", "cert", "key"):
        path = getattr(tls, name)
        if path:
            readable = os.access(path, os.R_OK)
            problem = None if readable else ("does not exist" if not Path(path).exists() else
                                             f"not readable by user {current_user()}")
            yield f"broker.tls.{name} {path}", problem


async def network_findings(config: Config, *, broker: bool, wait: float) -> list[Finding]:
    """Modbus TCP servers (a TCP connection each) and brokers (an MQTT connection each)."""
    found: list[Finding] = []
    for i, bus in enumerate(config.bus):
        if bus.type == "tcp":
            found.append((f"bus[{i}] {bus.name}: Modbus TCP {bus.host}:{bus.port}",
                          await _tcp_problem(bus.host, bus.port, wait)))
    if broker:
        for url in config.broker.urls:
            found.append((f"broker {url}", await _broker_problem(config, url, wait)))
    return found


async def _tcp_problem(host: str, port: int, wait: float) -> str | None:
    try:
        async with asyncio.timeout(wait):
            _, writer = await asyncio.open_connection(host, port)
    except TimeoutError:
        return f"no answer within {wait:g} s"
    except OSError as exc:
        return f"cannot connect: {exc.strerror or exc}"
    writer.close()
    await writer.wait_closed()
    return None


async def _broker_problem(config: Config, url_text: str, wait: float) -> str | None:
    url = parse_url(url_text)
    context = None
    if url.tls:
        tls = config.broker.tls
        try:
            context = ssl.create_default_context(cafile=tls.ca or None)
            if tls.cert:
                context.load_cert_chain(tls.cert, tls.key or None)
        except (OSError, ssl.SSLError) as exc:
            return f"TLS files unusable: {exc}"
    version = aiomqtt.ProtocolVersion.V5 if config.broker.protocol == "5" else aiomqtt.ProtocolVersion.V311
    # Its own client id: connecting as the gateway's would end the running gateway's session.
    client = aiomqtt.Client(url.host, url.port, identifier=f"streetedge-check-{os.getpid()}", protocol=version,
                            tls_context=context, timeout=wait)
    try:
        async with asyncio.timeout(wait + 1):
            async with client:
                pass
    except TimeoutError:
        return f"no answer within {wait:g} s"
    except aiomqtt.MqttError as exc:
        return f"cannot connect: {exc}"
    return None


def run_check(path: Path, *, broker: bool = True, timeout: float = 5.0) -> int:
    """Print one line per check of the configuration at ``path``; Exit.OK if all passed, Exit.FAILED if not.

    A file that does not load raises CliError (Exit.USAGE), as ``streetedge run`` would refuse it.
    """
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    print(f"ok    {path}: {config.site}/{config.gateway}, {len(config.bus)} bus(es), {len(config.node)} node(s), "
          f"{len(config.key)} key(s)")
    findings = list(file_findings(config))
    findings += asyncio.run(network_findings(config, broker=broker, wait=timeout))
    failed = 0
    for what, problem in findings:
        if problem is None:
            print(f"ok    {what}")
        else:
            failed += 1
            print(f"FAIL  {what}: {problem}")
    if failed:
        print(f"{failed} problem(s) found", file=sys.stderr)
        return Exit.FAILED
    print("all checks passed")
    return Exit.OK
