"""The command-security subcommands of ``streetedge``: ``keys new``, ``cmd``, ``audit verify``, ``bench commands``.

Registered by :func:`add_parsers` from ``tools/cli.py``; like every
subcommand they import their modules only when they run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

ACTIONS = ("dim", "switch", "override", "clear_override", "set_schedule", "set_config", "set_unit", "time_sync",
           "reboot", "rebirth")


def _keys_new(args: argparse.Namespace) -> int:
    from tools.keys import key_entry, new_key

    try:
        private, public = new_key(args.name, Path(args.dir), overwrite=args.force)
    except FileExistsError as exc:
        print(f"streetedge: {exc} (--force replaces it)", file=sys.stderr)
        return 2
    print(f"private key: {private} (keep it secret; only its owner can read it)")
    print(f"public key:  {public}")
    print("\nAdd this to the gateway configuration to trust the key:\n")
    print(key_entry(args.name, public, args.actions.split(","), args.targets.split(",")))
    return 0


def _cmd(args: argparse.Namespace) -> int:
    from tools.keys import load_private_key
    from tools.operator import Signer, send_command

    text = args.params or ""
    if text.startswith("@"):  # a schedule is easier to keep in a file
        text = Path(text[1:]).read_text()
    params: dict[str, object] = json.loads(text) if text else {}
    if args.action in ("dim", "override"):
        params.setdefault("level", args.level)
    if args.action == "switch":
        params.setdefault("on", args.state == "on")
    elif args.action == "override":
        params.setdefault("minutes", args.minutes)
    elif args.action == "set_unit" and args.unit is not None:
        params.setdefault("unit", args.unit)
    elif args.action == "reboot" and args.within is not None:
        params.setdefault("within", args.within)
    wait = args.timeout
    if wait is None:  # a reboot's result comes once the node is back (or ``within`` is over)
        within = params.get("within", 120) if args.action == "reboot" else None
        wait = float(within) + 30 if isinstance(within, int | float) else 10.0
    key_path = Path(args.key)
    signer = Signer(load_private_key(key_path), args.kid or key_path.stem)
    result = asyncio.run(send_command(
        broker=args.broker, site=args.site, gateway=args.gateway, signer=signer, target=args.target,
        action=args.action, params=params, wait=wait, protocol=args.protocol,
        command_id=args.id, lifetime=args.lifetime,
    ))
    print(json.dumps(result, indent=2, default=str))
    return 0 if result.get("status") == "done" else 1


def _audit_verify(args: argparse.Namespace) -> int:
    from gateway.commands.audit import verify_log

    path = Path(args.path)
    if not path.exists():
        print(f"streetedge: {path}: no such audit log", file=sys.stderr)
        return 2
    verdict = verify_log(path)
    if verdict.ok:
        print(f"{path}: {verdict.entries} entries, chain intact, head {verdict.head}")
        return 0
    print(f"{path}: BROKEN at line {verdict.bad_line}: {verdict.problem} "
          f"({verdict.entries - 1} entries before it are intact, last good hash {verdict.head})")
    return 1


def _bench_commands(args: argparse.Namespace) -> int:
    from tools.bench.commands import run_commands_bench

    code: int = run_commands_bench(
        nodes=args.nodes, rounds=args.rounds, baud=args.baud, paced=args.paced,
        bus_rounds=args.bus_rounds, write_docs=args.write_docs, host_lamps=args.host_lamps,
    )
    return code


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                bench: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``keys``, ``cmd``, ``audit`` under ``sub`` and ``commands`` under ``bench``."""
    p = sub.add_parser("keys", help="operator key pairs")
    keys = p.add_subparsers(dest="keys", required=True, metavar="ACTION")
    k = keys.add_parser("new", help="make an Ed25519 key pair and print its [[key]] entry")
    k.add_argument("name", help="key id (letters, digits, '_' and '-')")
    k.add_argument("--dir", default=".", help="where NAME.key and NAME.pub go")
    k.add_argument("--actions", default="dim,switch", help="comma-separated actions for the entry, or *")
    k.add_argument("--targets", default="all", help="comma-separated targets for the entry")
    k.add_argument("--force", action="store_true", help="replace an existing key pair")
    k.set_defaults(func=_keys_new)

    p = sub.add_parser("cmd", help="sign and send an operator command, print its result")
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--target", required=True, help="node id, group:NAME, bus:NAME or all")
    p.add_argument("--key", required=True, help="the operator's private key file (streetedge keys new)")
    p.add_argument("--kid", default=None, help="key id (default: the key file's name without .key)")
    p.add_argument("--level", type=int, default=100, help="dim or override level 0..100")
    p.add_argument("--state", choices=["on", "off"], default="on", help="for switch")
    p.add_argument("--minutes", type=int, default=60, help="override length, minutes")
    p.add_argument("--unit", type=int, default=None, help="for set_unit: the node's new Modbus unit")
    p.add_argument("--within", type=int, default=None, help="for reboot: seconds to wait for the node's return")
    p.add_argument("--params", default=None,
                   help='parameters as JSON, e.g. \'{"level": 40}\', or @FILE with the JSON (set_schedule)')
    p.add_argument("--id", default=None, help="command id (default: random)")
    p.add_argument("--lifetime", type=float, default=60.0, help="seconds the command stays valid")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument("--protocol", choices=["5", "3.1.1"], default="5")
    p.add_argument("--site", required=True)
    p.add_argument("--gateway", required=True)
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for the result (default 10; for reboot, its within + 30)")
    p.set_defaults(func=_cmd)

    p = sub.add_parser("audit", help="the command audit log")
    audit = p.add_subparsers(dest="audit", required=True, metavar="ACTION")
    a = audit.add_parser("verify", help="check the hash chain; report the first broken entry")
    a.add_argument("path")
    a.set_defaults(func=_audit_verify)

    b = bench.add_parser("commands", help="command latency p50/p99 (one lamp, a whole bus) on the virtual street")
    b.add_argument("--nodes", type=int, default=8, help="lamps on the bus")
    b.add_argument("--rounds", type=int, default=50, help="single-lamp commands")
    b.add_argument("--bus-rounds", type=int, default=10, help="whole-bus commands")
    b.add_argument("--baud", type=int, default=115200)
    b.add_argument("--paced", action="store_true", help="deliver bytes at the line rate")
    b.add_argument("--host-lamps", action="store_true",
                   help="run the lamps in one lamp host process on one drop (whole-bus benches up to 247 lamps)")
    b.add_argument("--write-docs", action="store_true", help="record the figures in docs/performance.md")
    b.set_defaults(func=_bench_commands)
