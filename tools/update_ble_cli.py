"""``streetedge update send --ble-config FILE --nodes A,B``: a roll-out to BLE nodes over GATT.

The nodes are the gateway configuration's ``[[ble.node]]`` entries (address and key); their command
counters are kept in its ``[ble] counters`` file, as the daemon keeps them, so a command of the daemon
and one of this roll-out never share a counter. Each node is its own line of the roll-out
(:mod:`gateway.update.rollout`): canaries first, stop at the first failure. The delivery is
:func:`gateway.update.ble_deliver` on the configuration's ``[ble] adapter``, as the daemon's: BlueZ's (the
default, or ``hci1``), or a Bumble host (``bumble:tcp-client:127.0.0.1:PORT``: the virtual street's radio).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from tools.exit_codes import CliError, Exit


def ble_targets(config_path: str, nodes: str) -> tuple[Any, list[Any]]:
    """The gateway configuration and its ``[[ble.node]]`` entries named in ``nodes`` (ids, comma-separated)."""
    from gateway.service.config import ConfigError, load_config

    try:
        config = load_config(Path(config_path))
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"--ble-config {config_path}: {exc.strerror}") from None
    known = {n.id: n for n in config.ble.node}
    wanted = [n for n in nodes.split(",") if n]
    missing = [n for n in wanted if n not in known]
    if not wanted or missing:
        raise CliError(f"--nodes {nodes!r}: {', '.join(missing) or 'no node'} not among the [[ble.node]] of "
                       f"{config_path} ({', '.join(known) or 'none'})")
    return config, [known[n] for n in wanted]


def send_ble(args: argparse.Namespace, package: Any, show: Any) -> int:
    """Roll ``package`` out to the BLE nodes ``args.nodes`` of ``args.ble_config``; the exit status."""
    from gateway.transport.ble_adapter import BleRadio
    from gateway.transport.ble_client import GattSender
    from gateway.transport.ble_session import GattSession
    from gateway.transport.ble_window import ReplayWindows
    from gateway.update.ble_deliver import GattFileRecords
    from gateway.update.rollout import Target, roll_out

    config, nodes = ble_targets(args.ble_config, args.nodes)

    async def run() -> Any:
        radio = BleRadio(config.ble.adapter)  # the adapter the daemon uses: BlueZ's, or a Bumble host's
        windows = ReplayWindows(config.ble.counters)
        sender = GattSender(windows, backend=radio.client, client_args=radio.args,
                            attempt_timeout=args.timeout if args.timeout > 2 else 10.0)
        sessions = {n.id: GattSession(sender, n) for n in nodes}
        try:
            return await roll_out(args.id, package, [Target(n.id, n.id, 0) for n in nodes],
                                  {i: GattFileRecords(s) for i, s in sessions.items()}, canaries=args.canaries,
                                  report=show)
        finally:
            for session in sessions.values():
                await session.release()
            windows.close()
            await radio.close()

    outcome = asyncio.run(run())
    return 0 if outcome.ok else int(Exit.FAILED)
